//! `cargo xtask speed`: the throughput measurement of `gpu-check.sh`.

use crate::fixture::{text, xtask};

fn speed(device: &str) -> String {
    let scratch =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("xtask-speed-{device}"));
    let _ = std::fs::remove_dir_all(&scratch);
    let out = xtask()
        .args([
            "speed",
            "--backbone",
            "hrnet_w18_small",
            "--image-size",
            "64",
            "--warmup",
            "1",
            "--steps",
            "2",
        ])
        .args(["--device", device])
        .arg("--scratch")
        .arg(&scratch)
        .output()
        .unwrap();
    assert!(out.status.success(), "speed failed:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("speed: "))
        .unwrap_or_else(|| panic!("no speed line:\n{stdout}"));
    let rate: f64 = line
        .split(" = ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no steps/s in `{line}`"));
    assert!(rate > 0.0 && rate.is_finite(), "{line}");
    assert!(line.contains("2 steps"), "{line}");
    line.to_string()
}

#[test]
fn speed_reports_steps_per_second_on_cpu() {
    assert!(speed("cpu").contains("on cpu"));
}

#[cfg(feature = "cuda")]
#[test]
fn speed_reports_steps_per_second_on_cuda() {
    assert!(speed("cuda:0").contains("on cuda:0"));
}
