//! The report opened in headless Chromium (Debian's `chromium`): the table and every image render.

use std::process::Command;

use crate::fixture::{first_run, text};

#[test]
fn the_report_renders_in_headless_chromium() {
    let (w, _, report, out) = first_run();
    assert!(out.status.success(), "reproduce failed:\n{}", text(out));
    let html = report.join("report.html");
    let profile = w.dir.join("chromium-profile");
    let shot = w.dir.join("report.png");
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
            "--window-size=1200,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output();
    let run = match run {
        Ok(r) => r,
        Err(e) => panic!(
            "cannot start `chromium` ({e}): this test needs Debian's chromium package \
             (`sudo apt-get install chromium`), which `cargo xtask test` installs when run as root"
        ),
    };
    assert!(run.status.success(), "chromium failed:\n{}", text(&run));
    let dom = String::from_utf8_lossy(&run.stdout);
    // The results table with both categories and the paper's values.
    assert!(dom.contains("<table id=\"results\">"), "no results table in the DOM");
    for needle in ["<td>carpet</td>", "<td>grid</td>", "98.71", "97.04", "mean all (2)"] {
        assert!(dom.contains(needle), "`{needle}` missing from the rendered report");
    }
    // Every image is embedded (two curves per category, the gallery panels).
    let embedded = dom.matches("src=\"data:image/png;base64,").count();
    assert!(embedded >= 2 * 2 + 2 * 2, "{embedded} embedded images");
    assert!(
        !dom.contains("src=\"gallery/") && !dom.contains("src=\"curves/"),
        "the HTML is not self-contained"
    );

    // The screenshot shows the curves (their blue, smoothed by scaling) and the heat maps.
    let img = image::open(&shot).expect("chromium wrote no screenshot").to_rgb8();
    let bluish = img.pixels().filter(|p| p[2] > 140 && p[0] < 90 && p[1] < 130).count();
    assert!(
        bluish > 500,
        "only {bluish} curve-blue pixels in the screenshot: images did not render"
    );
    let white = img.pixels().filter(|p| p.0 == [255, 255, 255]).count();
    assert!(white < img.pixels().count(), "blank screenshot");
}
