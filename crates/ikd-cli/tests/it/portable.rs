//! A run is self-contained: copied elsewhere, without the Hugging Face cache and without the
//! teacher file it was trained from, it tests and predicts to the same bytes; a changed teacher
//! copy is refused naming both checksums.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{dataset, ikd_ok};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Every file below `dir` (relative path → bytes), sorted.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `ikd` with an empty Hugging Face home and no offline switch: any hub access would fail.
fn ikd_isolated(hf_home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ikd"))
        .arg("--quiet")
        .args(args)
        .env("HF_HOME", hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap()
}

#[test]
fn a_copied_run_needs_neither_the_teacher_file_nor_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let teacher = tmp.path().join("teacher.safetensors");
    std::fs::copy(fixtures().join("hrnet/tiny/weights.safetensors"), &teacher).unwrap();
    let cfg = fixtures().join("hrnet/tiny/config.json");
    let run = tmp.path().join("run");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (root_s, run_s, teacher_s, cfg_s) = (s(&root), s(&run), s(&teacher), s(&cfg));
    ikd_ok(&[
        "train",
        "--data-root",
        &root_s,
        "--category",
        "tile",
        "--out",
        &run_s,
        "--backbone",
        &cfg_s,
        "--teacher-weights",
        &teacher_s,
        "--image-size",
        "64",
        "--epochs",
        "1",
        "--no-eval",
    ]);
    assert!(run.join(ikd::files::TEACHER_WEIGHTS).is_file(), "the run keeps its teacher");
    let images = root.join("tile/test");
    let (pred_a, pred_b) = (tmp.path().join("pred_a"), tmp.path().join("pred_b"));
    ikd_ok(&["test", "--run", &run_s, "--save-maps"]);
    ikd_ok(&["predict", "--run", &run_s, &s(&images.join("good")), "--out", &s(&pred_a)]);

    let elsewhere = tmp.path().join("elsewhere/run");
    copy_dir(&run, &elsewhere);
    std::fs::remove_dir_all(elsewhere.join("anomaly_maps")).unwrap();
    std::fs::remove_file(&teacher).unwrap();
    let hf_home = tmp.path().join("empty-hf-home");
    std::fs::create_dir(&hf_home).unwrap();
    let el = s(&elsewhere);
    for args in [
        vec!["test", "--run", el.as_str(), "--save-maps"],
        vec!["predict", "--run", el.as_str(), &s(&images.join("good")), "--out", &s(&pred_b)],
    ] {
        let out = ikd_isolated(&hf_home, &args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let same = |a: &Path, b: &Path, what: &str| {
        let (fa, fb) = (files(a), files(b));
        let names = |f: &[(PathBuf, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&fa), names(&fb), "{what}: the same files");
        assert!(fa.len() >= 2, "{what}: {:?}", names(&fa));
        for ((name, x), (_, y)) in fa.iter().zip(&fb) {
            if name.extension().is_some_and(|e| e == "json") {
                continue; // names the run's and the output's folders
            }
            assert!(x == y, "{what}: {} differs", name.display());
        }
    };
    same(&run.join("anomaly_maps"), &elsewhere.join("anomaly_maps"), "ikd test --save-maps");
    same(&pred_a, &pred_b, "ikd predict");
    let scores = |d: &Path| -> Vec<f64> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap())
                .unwrap();
        v["images"].as_array().unwrap().iter().map(|i| i["score"].as_f64().unwrap()).collect()
    };
    assert_eq!(scores(&pred_a), scores(&pred_b), "the same scores");

    // a changed teacher copy is an error naming both checksums
    let kept = elsewhere.join(ikd::files::TEACHER_WEIGHTS);
    let mut bytes = std::fs::read(&kept).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&kept, bytes).unwrap();
    let out = ikd_isolated(&hf_home, &["test", "--run", &el]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let id = ikd::TeacherIdentity::load(&elsewhere.join(ikd::files::TEACHER)).unwrap();
    let expected = id.sha256().unwrap();
    assert!(err.contains(expected) && err.contains("teacher.safetensors"), "{err}");
    assert_eq!(err.matches("SHA-256").count(), 2, "expected and found: {err}");
}
