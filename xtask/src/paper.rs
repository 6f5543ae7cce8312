//! The paper's published MVTec AD values (Tables 1 and 2), read from `datasets/ikd_paper_mvtec.csv`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The default location of the table.
pub fn default_path() -> PathBuf {
    crate::util::workspace_root().join("datasets").join("ikd_paper_mvtec.csv")
}

/// One category's published IKD values, in percent.
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
#[derive(Debug, Clone, Default)]
pub struct PaperTable {
    /// Per category.
    pub rows: BTreeMap<String, PaperRow>,
}

impl PaperTable {
    /// Reads the CSV: `#` lines are comments; columns `category`, `kind`, `ikd_pixel_auroc`,
    /// `ikd_au_pro` are required; `summary` rows are skipped (means are recomputed over the
    /// categories present).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the paper's table {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses the CSV text (see [`PaperTable::load`]).
    pub fn parse(text: &str) -> Result<Self> {
        let mut lines =
            text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let Some(header) = lines.next() else { bail!("the table is empty") };
        let cols: Vec<&str> = header.split(',').map(str::trim).collect();
        let col = |name: &str| {
            cols.iter()
                .position(|c| *c == name)
                .with_context(|| format!("no column `{name}` in the header"))
        };
        let (ci, ki, ai, pi) =
            (col("category")?, col("kind")?, col("ikd_pixel_auroc")?, col("ikd_au_pro")?);
        let mut rows = BTreeMap::new();
        for (n, line) in lines.enumerate() {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let get = |i: usize| {
                f.get(i).copied().with_context(|| format!("data row {}: too few fields", n + 1))
            };
            let texture = match get(ki)? {
                "texture" => true,
                "object" => false,
                "summary" => continue,
                other => {
                    bail!("data row {}: kind `{other}` is not texture, object or summary", n + 1)
                }
            };
            let num = |i: usize| -> Result<f64> {
                let s = get(i)?;
                s.parse::<f64>()
                    .with_context(|| format!("data row {}: `{s}` is not a number", n + 1))
            };
            rows.insert(
                get(ci)?.to_string(),
                PaperRow { texture, pixel_auroc: num(ai)?, au_pro: num(pi)? },
            );
        }
        Ok(Self { rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_has_all_fifteen_categories() {
        let t = PaperTable::load(&default_path()).unwrap();
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
        assert!(
            PaperTable::parse("category,kind,ikd_pixel_auroc,ikd_au_pro\nx,plant,1,1\n").is_err()
        );
    }
}
