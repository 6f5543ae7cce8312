//! `cargo xtask demo --quick` with the teacher from a Hugging Face cache laid out as
//! `huggingface_hub` lays it out (no network: the hub endpoint is a closed local port), and
//! without one: `auto` falls back to a random teacher and says what that means, `hub` fails.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::fixture::{hf_cache_with_teacher, text, xtask};

/// A scratch folder of its own for each demo test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xtask-demo").join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The quick demo in `dir` with `HF_HOME=dir/hf`.
fn demo(dir: &Path, teacher: &str) -> Output {
    xtask()
        .args(["demo", "--quick", "--no-progress", "--teacher", teacher])
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--runs")
        .arg(dir.join("runs"))
        .arg("--report-out")
        .arg(dir.join("report"))
        .env("HF_HOME", dir.join("hf"))
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap()
}

#[test]
fn the_demo_uses_the_hub_teacher_from_the_cache_and_names_it() {
    let dir = scratch("hub");
    let cached = hf_cache_with_teacher(&dir.join("hf"));
    let out = demo(&dir, "auto");
    let log = text(&out);
    assert!(out.status.success(), "demo failed:\n{log}");
    let named = format!(
        "hub timm/hrnet_w18_small.ms_in1k at revision {} (SHA-256 {})",
        cached.revision, cached.sha256
    );
    assert!(
        log.contains(&format!("teacher: {named}")),
        "the terminal does not name the teacher:\n{log}"
    );
    assert!(!log.contains("random teacher"), "{log}");
    // Each run records it, and the report states it.
    for category in ["carpet", "tile"] {
        let t =
            std::fs::read_to_string(dir.join("runs").join(category).join("teacher.json")).unwrap();
        let t: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(t["source"], "hub");
        assert_eq!(t["sha256"], cached.sha256.as_str());
        assert_eq!(t["revision"], cached.revision.as_str());
    }
    let html = std::fs::read_to_string(dir.join("report").join("report.html")).unwrap();
    assert!(
        html.contains(&format!("<p id=\"teacher\">Teacher: {named}.</p>")),
        "report names no teacher"
    );
    assert!(!html.contains("random teacher"), "a hub teacher's report warns of a random one");
    let md = std::fs::read_to_string(dir.join("report").join("report.md")).unwrap();
    assert!(md.contains(&named));
}

#[test]
fn without_weights_auto_falls_back_to_a_random_teacher_and_says_so() {
    let dir = scratch("random");
    let out = demo(&dir, "auto");
    let log = text(&out);
    assert!(out.status.success(), "demo failed:\n{log}");
    assert!(log.contains("no ImageNet teacher"), "no warning:\n{log}");
    assert!(log.contains("cargo xtask weights --backbone hrnet_w18_small"), "{log}");
    assert!(log.contains("teacher: random (seeded initialisation, seed 1)"), "{log}");
    let t = std::fs::read_to_string(dir.join("runs").join("carpet").join("teacher.json")).unwrap();
    assert!(t.contains("\"source\": \"random\""), "{t}");
    let html = std::fs::read_to_string(dir.join("report").join("report.html")).unwrap();
    assert!(
        html.contains("Teacher: random (seeded initialisation, seed 1)."),
        "report names no teacher"
    );
    assert!(html.contains(
        "these scores show that the pipeline runs end to end, not what the method achieves"
    ));

    // `--teacher hub` insists: with nothing cached and no hub, it fails and names the repository.
    let out = demo(&dir, "hub");
    let log = text(&out);
    assert!(!out.status.success(), "hub teacher without weights succeeded:\n{log}");
    assert!(log.contains("timm/hrnet_w18_small.ms_in1k"), "{log}");
}
