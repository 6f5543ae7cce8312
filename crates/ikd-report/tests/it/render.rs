//! The report opened in headless Chromium (Debian's `chromium`): every chart's axis titles, tick
//! labels and legend are SVG text that the browser lays out inside the chart, the tables render,
//! and the screenshot shows the curves.

use std::path::Path;
use std::process::{Command, Output};

use ikd_report::{find_runs, write_report, PaperTable, ReportOptions};

use crate::{paper_csv, scratch, world};

/// Appended to a copy of the page: writes each chart text's rendered width and whether it lies
/// inside its chart into the DOM, which `--dump-dom` then prints.
const PROBE: &str = "<script>for (const t of document.querySelectorAll('svg.chart text')) {\
    const r = t.getBoundingClientRect(), s = t.ownerSVGElement.getBoundingClientRect();\
    const inside = r.left >= s.left - 0.5 && r.right <= s.right + 0.5 && r.top >= s.top - 0.5 \
    && r.bottom <= s.bottom + 0.5;\
    t.setAttribute('data-width', t.getComputedTextLength().toFixed(1));\
    t.setAttribute('data-inside', inside ? 'yes' : 'no');}</script>";

fn chromium(page: &Path, shot: &Path, profile: &Path) -> Output {
    let run = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,2200",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output();
    match run {
        Ok(r) => r,
        Err(e) => panic!(
            "cannot start `chromium` ({e}): this test needs Debian's chromium package \
             (`sudo apt-get install chromium`), which `cargo xtask test` installs when run as root"
        ),
    }
}

/// The `<text>` elements of `class` in the DOM, as (attributes, content).
fn texts<'a>(dom: &'a str, class: &str) -> Vec<(&'a str, &'a str)> {
    let open = format!("<text class=\"{class}\"");
    dom.match_indices(&open)
        .map(|(i, _)| {
            let rest = &dom[i..];
            let end = rest.find('>').unwrap();
            let close = rest.find("</text>").unwrap();
            (&rest[..end], &rest[end + 1..close])
        })
        .collect()
}

#[test]
fn the_report_renders_in_headless_chromium_with_readable_axes() {
    let w = world();
    let dir = scratch("render");
    let out = dir.join("report");
    let options =
        ReportOptions { paper: Some(PaperTable::load(&paper_csv()).unwrap()), gallery: 3 };
    write_report(&find_runs(&[&w.runs]).unwrap(), &out, &options).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let page = dir.join("probed.html");
    std::fs::write(&page, html.replace("</body>", &format!("{PROBE}</body>"))).unwrap();
    let shot = dir.join("report.png");
    let run = chromium(&page, &shot, &dir.join("chromium-profile"));
    assert!(
        run.status.success(),
        "chromium failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let dom = String::from_utf8_lossy(&run.stdout);
    println!("screenshot of the report: {}", shot.display());

    // The tables, with both runs and the paper's values.
    assert!(dom.contains("<table id=\"results\">"), "no results table in the DOM");
    for needle in ["<td>carpet</td>", "<td>grid</td>", "98.71", "97.04", "mean all (2)"] {
        assert!(dom.contains(needle), "`{needle}` missing from the rendered report");
    }

    // Every chart's text is in the DOM, laid out with a width, inside its chart.
    assert_eq!(dom.matches("<svg ").count(), 8, "four charts per run");
    let x_titles = texts(&dom, "axis-title x");
    let y_titles = texts(&dom, "axis-title y");
    assert_eq!((x_titles.len(), y_titles.len()), (8, 8));
    for want in ["False positive rate", "Step"] {
        assert_eq!(x_titles.iter().filter(|t| t.1 == want).count(), 4, "x axis `{want}`");
    }
    for want in ["True positive rate", "Per-region overlap", "Loss", "Margin"] {
        assert_eq!(y_titles.iter().filter(|t| t.1 == want).count(), 2, "y axis `{want}`");
    }
    let x_ticks = texts(&dom, "tick-label x");
    let y_ticks = texts(&dom, "tick-label y");
    assert!(
        x_ticks.len() >= 8 * 3 && y_ticks.len() >= 8 * 3,
        "{} {}",
        x_ticks.len(),
        y_ticks.len()
    );
    for label in ["0.0", "0.2", "1.0", "0.05", "0.30"] {
        assert!(x_ticks.iter().any(|t| t.1 == label), "no x tick label {label}");
    }
    let legend = texts(&dom, "legend-label");
    for want in ["pixel ROC", "chance", "PRO", "total loss", "level 1", "level 2"] {
        assert!(legend.iter().any(|t| t.1 == want), "no legend entry `{want}`");
    }
    let all: Vec<_> =
        [x_titles, y_titles, x_ticks, y_ticks, legend, texts(&dom, "chart-title")].concat();
    for (attrs, text) in &all {
        let width: f64 = attrs
            .split("data-width=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("`{text}` was not measured: {attrs}"));
        assert!(width > 0.0, "`{text}` has no width: the browser drew no glyphs");
        assert!(attrs.contains("data-inside=\"yes\""), "`{text}` sticks out of its chart: {attrs}");
    }

    // The screenshot is not blank and shows the blue curves.
    let img = image::open(&shot).expect("chromium wrote no screenshot").to_rgb8();
    let white = img.pixels().filter(|p| p.0 == [255, 255, 255]).count();
    assert!(white < img.pixels().count() * 99 / 100, "blank screenshot");
    let bluish = img.pixels().filter(|p| p[2] > 140 && p[0] < 90 && p[1] < 130).count();
    assert!(bluish > 500, "only {bluish} curve-blue pixels in the screenshot");
    let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 90)).count();
    assert!(dark > 5_000, "only {dark} dark (text) pixels in the screenshot");
}
