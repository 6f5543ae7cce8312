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
    // the number before " steps/s" after `label`
    let rate = |label: &str| -> f64 {
        line.split(label)
            .nth(1)
            .and_then(|r| r.trim_start().split(' ').next())
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no `{label}` steps/s in `{line}`"))
    };
    for label in ["training steps only", "with data loading"] {
        let r = rate(label);
        assert!(r > 0.0 && r.is_finite(), "{label}: {line}");
    }
    assert!(line.contains("2 timed steps per epoch"), "{line}");
    // two epochs of 1 + 2 steps; each step's wall time holds its own compute time
    let log = std::fs::read_to_string(scratch.join("run/train_log.jsonl")).unwrap();
    let entries: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(entries.len(), 6, "{log}");
    for e in &entries {
        let (wall, ips) = (e["wall_s"].as_f64().unwrap(), e["images_per_s"].as_f64().unwrap());
        assert!(wall > 0.0 && wall >= 2.0 / ips * 0.999, "{e}");
    }
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
