//! The paper's published MVTec AD values (Tables 1 and 2), read from a CSV file such as the
//! workspace's `datasets/ikd_paper_mvtec.csv`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{ReportError, Result};

/// One category's published IKD values, in percent.
///
/// ```
/// let r = ikd_report::PaperRow { texture: true, pixel_auroc: 98.71, au_pro: 94.49 };
/// assert!(r.texture);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperRow {
    /// `true` for the five texture categories, `false` for the ten objects.
    pub texture: bool,
    /// Pixel AUROC (%).
    pub pixel_auroc: f64,
    /// AU-PRO (%).
    pub au_pro: f64,
}

/// The paper's per-category IKD values, by category name.
///
/// ```
/// let t = ikd_report::PaperTable::parse("category,kind,ikd_pixel_auroc,ikd_au_pro\nbottle,object,99.3,95.1\n")?;
/// assert_eq!(t.rows["bottle"].pixel_auroc, 99.3);
/// assert!(!t.rows["bottle"].texture);
/// # Ok::<(), ikd_report::ReportError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct PaperTable {
    /// Per category.
    pub rows: BTreeMap<String, PaperRow>,
}

impl PaperTable {
    /// Reads the CSV: `#` lines are comments; columns `category`, `kind`, `ikd_pixel_auroc`,
    /// `ikd_au_pro` are required; `summary` rows are skipped (means are recomputed over the
    /// categories present).
    ///
    /// ```no_run
    /// let t = ikd_report::PaperTable::load("datasets/ikd_paper_mvtec.csv".as_ref())?;
    /// println!("{} categories", t.rows.len());
    /// # Ok::<(), ikd_report::ReportError>(())
    /// ```
    ///
    /// # Errors
    /// [`ReportError::File`] naming the file when it cannot be read or (saying what is
    /// wrong) when it is not such a table.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ikd::Error::io(path, e))?;
        Self::parse_rows(&text).map(|rows| Self { rows }).map_err(|msg| {
            ikd::Error::bad_file(path, format!("not the paper's table: {msg}")).into()
        })
    }

    /// Parses the CSV text (see [`PaperTable::load`]).
    ///
    /// # Errors
    /// [`ReportError::BadPaperTable`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_rows(text).map(|rows| Self { rows }).map_err(ReportError::BadPaperTable)
    }

    fn parse_rows(text: &str) -> Result<BTreeMap<String, PaperRow>, String> {
        let mut lines =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let Some(header) = lines.next() else { return Err("the table is empty".into()) };
        let cols: Vec<&str> = header.split(',').map(str::trim).collect();
        let col = |name: &str| {
            cols.iter().position(|c| *c == name).ok_or(format!("no column `{name}` in the header"))
        };
        let (ci, ki, ai, pi) =
            (col("category")?, col("kind")?, col("ikd_pixel_auroc")?, col("ikd_au_pro")?);
        let mut rows = BTreeMap::new();
        for (n, line) in lines.enumerate() {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let get = |i: usize| {
                f.get(i).copied().ok_or_else(|| format!("data row {}: too few fields", n + 1))
            };
            let texture = match get(ki)? {
                "texture" => true,
                "object" => false,
                "summary" => continue,
                other => {
                    return Err(format!(
                        "data row {}: kind `{other}` is not texture, object or summary",
                        n + 1
                    ))
                }
            };
            let num = |i: usize| -> Result<f64, String> {
                let s = get(i)?;
                s.parse::<f64>().map_err(|_| format!("data row {}: `{s}` is not a number", n + 1))
            };
            rows.insert(
                get(ci)?.to_string(),
                PaperRow { texture, pixel_auroc: num(ai)?, au_pro: num(pi)? },
            );
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workspace's copy of the paper's table.
    fn shipped() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/ikd_paper_mvtec.csv")
    }

    #[test]
    fn the_shipped_table_has_all_fifteen_categories() {
        let t = PaperTable::load(&shipped()).unwrap();
        assert_eq!(t.rows.len(), 15);
        for c in ikd_data::MVTEC_CATEGORIES {
            assert!(t.rows.contains_key(c), "{c} missing");
        }
        assert_eq!(t.rows["carpet"], PaperRow { texture: true, pixel_auroc: 98.71, au_pro: 94.49 });
        let textures = t.rows.values().filter(|r| r.texture).count();
        assert_eq!(textures, 5);
        // The published mean over all categories (97.81) is the mean of the rows.
        let mean = t.rows.values().map(|r| r.pixel_auroc).sum::<f64>() / 15.0;
        assert!((mean - 97.81).abs() < 0.01, "{mean}");
    }

    #[test]
    fn bad_tables_are_refused() {
        assert!(PaperTable::parse("# only a comment\n").is_err());
        assert!(PaperTable::parse("category,kind\nx,texture\n").is_err());
        assert!(PaperTable::parse("category,kind,ikd_pixel_auroc,ikd_au_pro\nx,texture,abc,1\n")
            .is_err());
        let e = PaperTable::parse("category,kind,ikd_pixel_auroc,ikd_au_pro\nx,plant,1,1\n")
            .unwrap_err();
        assert!(e.to_string().contains("kind `plant`"), "{e}");
        let missing = PaperTable::load(Path::new("no/such/table.csv")).unwrap_err();
        assert!(missing.to_string().starts_with("no/such/table.csv: "), "{missing}");
    }
}
