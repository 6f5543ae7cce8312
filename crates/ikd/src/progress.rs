//! Progress bars.

/// A progress bar of `len` steps labelled `label`, hidden unless `show`.
pub(crate) fn bar(len: u64, label: &str, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{label} [{{bar:30}}] {{pos}}/{{len}} {{msg}} ({{per_sec}}, eta {{eta}})"
    )) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}
