//! Reports of finished IKD runs (folders written by `ikd train` / [`ikd::train`] and
//! [`ikd::test_run`]): one folder with `report.html` (self-contained), `report.md`,
//! `results.csv` and `results.json`.
//!
//! * **Tables**: pixel AUROC, AU-PRO and image AUROC per run, beside the values the IKD paper
//!   published for MVTec AD categories when given the paper's table ([`PaperTable`]), with means
//!   over textures, objects and all; training and test time; the runs' settings. Each table is
//!   built once and rendered to Markdown, HTML and CSV.
//! * **Curves** per run: the ROC curve (from [`ikd_metrics::roc_curve`]), the PRO curve, and the
//!   training loss and AHSM margins of every optimiser step (`train_log.jsonl`). The HTML report
//!   draws them as inline SVG with axis titles, tick labels and a legend; the Markdown report
//!   shows PNG files (`curves/`) described in words.
//! * **Gallery**: per run the worst and the best test images with their heat maps.
//! * The report folder is built beside its destination and renamed into place: never
//!   half-written.
//!
//! ```no_run
//! use ikd_report::{find_runs, write_report, PaperTable, ReportOptions};
//!
//! // A folder of run folders (one per category) and one more run.
//! let runs = find_runs(&["runs/mvtec", "runs/bottle-long"])?;
//! let options = ReportOptions {
//!     paper: Some(PaperTable::load("datasets/ikd_paper_mvtec.csv".as_ref())?),
//!     gallery: 3,
//! };
//! let results = write_report(&runs, "reports/mvtec".as_ref(), &options)?;
//! for row in &results.categories {
//!     println!("{}: pixel AUROC {:.2} % (paper: {:?})", row.name, row.pixel_auroc, row.paper_pixel_auroc);
//! }
//! # Ok::<(), ikd_report::ReportError>(())
//! ```
//!
//! The same from the command line: `ikd report runs/mvtec runs/bottle-long --out reports/mvtec
//! --paper datasets/ikd_paper_mvtec.csv`.

/// The README's examples, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod chart;
mod doc;
mod error;
mod figures;
mod html;
mod machine;
mod markdown;
mod paper;
mod png;
mod report;
mod results;
mod run;
mod stage;
mod svg;
mod table;
mod tables;

pub use error::{ReportError, Result};
pub use machine::Machine;
pub use paper::{PaperRow, PaperTable};
pub use report::{write_report, ReportOptions};
pub use results::{Mean, Results, Row, RANDOM_TEACHER_NOTE};
pub use run::{find_runs, is_finished};
