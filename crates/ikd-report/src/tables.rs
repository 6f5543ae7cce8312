//! The report's tables, built once from [`Results`] and rendered to Markdown, HTML and CSV: the
//! results beside the paper's values, the image-level decisions, training and test time, the
//! settings, and `results.csv` with every measured column.

use crate::results::Results;
use crate::table::{Cell, Row as TableRow, Table};

/// The results table as shown: the paper's columns only when some run has a published value.
pub(crate) fn results_table(r: &Results) -> Table {
    let paper = r.categories.iter().any(|x| x.paper_pixel_auroc.is_some());
    let mut headers = vec!["run", "kind", "pixel AUROC"];
    if paper {
        headers.extend(["paper", "Δ"]);
    }
    headers.push("AU-PRO");
    if paper {
        headers.extend(["paper", "Δ"]);
    }
    headers.push("image AUROC");
    let mut t = Table::new("results", &headers);
    t.caption = Some(if paper {
        "Pixel AUROC and AU-PRO (FPR ≤ 0.3) in %, next to the values published in Cao et al. \
         2022 (Tables 1 and 2); Δ = ours − paper. Runs on data that is not MVTec AD's \
         (synthetic categories included) have no published value (—)."
            .into()
    } else {
        "Pixel AUROC, AU-PRO (FPR ≤ 0.3) and image AUROC in %.".into()
    });
    if r.categories.iter().any(|x| x.pixel_auroc.is_nan()) {
        if let Some(c) = t.caption.as_mut() {
            c.push_str(
                " Runs whose test images have no masks are scored at image level only: their \
                 pixel metrics are absent (—).",
            );
        }
    }
    let line = |auroc: f64, p_auroc: Option<f64>, pro: f64, p_pro: Option<f64>| {
        let mut cells = vec![Cell::num(auroc, 2)];
        if paper {
            cells.extend([Cell::opt(p_auroc, 2), Cell::diff(p_auroc.map(|p| auroc - p), 2)]);
        }
        cells.push(Cell::num(pro, 2));
        if paper {
            cells.extend([Cell::opt(p_pro, 2), Cell::diff(p_pro.map(|p| pro - p), 2)]);
        }
        cells
    };
    for x in &r.categories {
        let mut cells = vec![Cell::text(&x.name), Cell::text(&x.kind)];
        cells.extend(line(x.pixel_auroc, x.paper_pixel_auroc, x.au_pro, x.paper_au_pro));
        cells.push(Cell::num(x.image_auroc, 2));
        t.push(cells);
    }
    for m in &r.means {
        let mut cells =
            vec![Cell::text(format!("mean {} ({})", m.group, m.categories)), Cell::text("")];
        cells.extend(line(m.pixel_auroc, m.paper_pixel_auroc, m.au_pro, m.paper_au_pro));
        t.rows.push(TableRow { cells, summary: true });
    }
    t
}

pub(crate) fn decisions_table(r: &Results) -> Table {
    let mut t = Table::new(
        "decisions",
        &[
            "run",
            "image AUROC",
            "image AP",
            "image F1-max",
            "OK/NG threshold",
            "pixel AP",
            "pixel F1-max",
        ],
    );
    t.caption = Some(
        "Image-level decisions, in %: an image is anomalous (NG) when its score (the maximum of \
         its anomaly map) reaches the threshold of the best image F1 on the test set; pixel AP \
         and F1-max for the defect masks."
            .into(),
    );
    for x in &r.categories {
        t.push(vec![
            Cell::text(&x.name),
            Cell::num(x.image_auroc, 2),
            Cell::opt(x.image_ap, 2),
            Cell::opt(x.image_f1_max, 2),
            Cell::opt(x.image_threshold, 4),
            Cell::num(x.pixel_ap, 2),
            Cell::num(x.f1_max, 2),
        ]);
    }
    t
}

pub(crate) fn training_table(r: &Results) -> Table {
    let mut t = Table::new(
        "time",
        &[
            "run",
            "steps",
            "training s",
            "training images/s",
            "last loss",
            "last margins",
            "test images",
            "test images/s",
        ],
    );
    for x in &r.categories {
        let margins: Vec<String> = x.final_margins.iter().map(|m| format!("{m:.4}")).collect();
        t.push(vec![
            Cell::text(&x.name),
            Cell::int(x.train_steps),
            Cell::num(x.train_seconds, 1),
            Cell::num(x.train_images_per_s, 2),
            Cell::opt(x.final_loss, 4),
            Cell::text(margins.join(", ")),
            Cell::int(x.test_images as u64),
            Cell::num(x.test_images_per_s, 2),
        ]);
    }
    t
}

pub(crate) fn settings_table(r: &Results) -> Table {
    let mut t = Table::new("settings", &["setting", "value"]);
    for (k, vals) in &r.settings {
        let v = if vals.len() == 1 {
            vals.keys().next().cloned().unwrap_or_default()
        } else {
            vals.iter()
                .map(|(v, runs)| format!("{v} ({})", runs.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        };
        t.push(vec![Cell::text(k), Cell::Code(v)]);
    }
    t
}

/// `results.csv`: every measured column at full precision, one line per run.
pub(crate) fn csv_table(r: &Results) -> Table {
    let mut t = Table::new(
        "results-csv",
        &[
            "category",
            "kind",
            "pixel_auroc",
            "au_pro",
            "paper_pixel_auroc",
            "paper_au_pro",
            "diff_pixel_auroc",
            "diff_au_pro",
            "pro_ikd200",
            "image_auroc",
            "pixel_ap",
            "f1_max",
            "image_ap",
            "image_f1_max",
            "image_threshold",
            "train_steps",
            "train_seconds",
            "train_images_per_s",
            "test_images",
            "test_images_per_s",
            "name",
            "run",
        ],
    );
    for x in &r.categories {
        t.push(vec![
            Cell::text(&x.category),
            Cell::text(&x.kind),
            Cell::num(x.pixel_auroc, 4),
            Cell::num(x.au_pro, 4),
            Cell::opt(x.paper_pixel_auroc, 4),
            Cell::opt(x.paper_au_pro, 4),
            Cell::opt(x.diff_pixel_auroc, 4),
            Cell::opt(x.diff_au_pro, 4),
            Cell::num(x.pro_ikd200, 4),
            Cell::num(x.image_auroc, 4),
            Cell::num(x.pixel_ap, 4),
            Cell::num(x.f1_max, 4),
            Cell::opt(x.image_ap, 4),
            Cell::opt(x.image_f1_max, 4),
            Cell::opt(x.image_threshold, 6),
            Cell::int(x.train_steps),
            Cell::num(x.train_seconds, 2),
            Cell::num(x.train_images_per_s, 3),
            Cell::int(x.test_images as u64),
            Cell::num(x.test_images_per_s, 3),
            Cell::text(&x.name),
            Cell::text(&x.run),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::samples::{results, row};

    #[test]
    fn the_paper_columns_appear_only_with_published_values() {
        let with = results_table(&results(vec![
            row("carpet", "texture", 90.0, Some(98.71)),
            row("x", "synthetic", 60.0, None),
        ]));
        assert_eq!(with.headers.len(), 9);
        let md = with.to_markdown();
        assert!(md.contains("| carpet | texture | 90.00 | 98.71 | -8.71 |"), "{md}");
        assert!(md.contains("| x | synthetic | 60.00 | — | — | 55.00 | — | — | 0.00 |"), "{md}");
        assert!(md.contains("| **mean all (2)** |  | **75.00** | **—** |"), "{md}");
        let without = results_table(&results(vec![row("x", "synthetic", 60.0, None)]));
        assert_eq!(without.headers, ["run", "kind", "pixel AUROC", "AU-PRO", "image AUROC"]);
        assert!(!without.to_html().contains("paper"));
    }

    #[test]
    fn the_csv_has_every_column_at_full_precision() {
        let csv = csv_table(&results(vec![row("a,b", "synthetic", 70.0, None)])).to_csv();
        let line = csv.lines().nth(1).unwrap();
        assert!(line.starts_with("\"a,b\",synthetic,70.0000,65.0000,,,,,"), "{line}");
        assert!(line.ends_with(",\"a,b\",\"runs/a,b\""), "{line}");
        assert_eq!(csv.lines().next().unwrap().split(',').count(), 22);
    }
}
