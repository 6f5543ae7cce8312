//! The progress bars of long work: one look for every crate.
//!
//! `<label> [=====>    ] 120/400 <message> (31.2/s, eta 9s)` for counted work,
//! `<label> [=====>    ] 12.0 MiB/40.1 MiB <message> (3.1 MiB/s, eta 9s)` for bytes, a spinner
//! where the total is unknown. A bar asked for with `show = false` is hidden: nothing is drawn,
//! but it can be used all the same. indicatif also hides bars when standard error is not a
//! terminal.
//!
//! ```
//! let pb = ikd_io::progress::bar(3, "train carpet", false);
//! for _ in 0..3 {
//!     pb.inc(1);
//! }
//! pb.finish_and_clear();
//! assert_eq!(pb.position(), 3);
//! ```

pub use indicatif::ProgressBar;
use indicatif::ProgressStyle;

/// What a bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Items: images, steps, files.
    Items,
    /// Bytes (shown as KiB, MiB, …).
    Bytes,
}

fn style(unit: Unit, label: &str) -> ProgressStyle {
    let counts = match unit {
        Unit::Items => "{pos}/{len}",
        Unit::Bytes => "{bytes}/{total_bytes}",
    };
    let rate = match unit {
        Unit::Items => "{per_sec}",
        Unit::Bytes => "{bytes_per_sec}",
    };
    let label = label.replace('{', "{{").replace('}', "}}");
    let template = format!("{label} [{{bar:30}}] {counts} {{msg}} ({rate}, eta {{eta}})");
    match ProgressStyle::with_template(&template) {
        Ok(s) => s.progress_chars("=> "),
        // only a template error of ours could get here; fall back to indicatif's default
        Err(_) => ProgressStyle::default_bar(),
    }
}

/// A bar of `len` items labelled `label`, hidden unless `show`.
pub fn bar(len: u64, label: &str, show: bool) -> ProgressBar {
    with_unit(Some(len), label, Unit::Items, show)
}

/// A bar of `len` bytes (a spinner when the length is unknown) labelled `label`, hidden unless
/// `show`.
pub fn bytes(len: Option<u64>, label: &str, show: bool) -> ProgressBar {
    with_unit(len, label, Unit::Bytes, show)
}

/// A bar counting `unit`s, `len` of them (a spinner for `None`), hidden unless `show`.
pub fn with_unit(len: Option<u64>, label: &str, unit: Unit, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    match len {
        Some(n) => ProgressBar::new(n).with_style(style(unit, label)),
        None => {
            let spinner = match unit {
                Unit::Items => "{spinner} {label} {pos} {msg} ({per_sec})",
                Unit::Bytes => "{spinner} {label} {bytes} {msg} ({bytes_per_sec})",
            }
            .replace("{label}", &label.replace('{', "{{").replace('}', "}}"));
            let s = ProgressStyle::with_template(&spinner)
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            ProgressBar::new_spinner().with_style(s)
        }
    }
}
