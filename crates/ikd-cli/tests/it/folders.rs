//! Folder mode (`--normal-dir`, `--abnormal-dir`, `--mask-dir`) and test sets without masks.

use std::fs;
use std::path::{Path, PathBuf};

use super::{dataset, ikd_err, ikd_ok, train_args};

/// The synthetic `tile` category as a user's folders: `ok/` (train and test good images),
/// `ng/` (the defective ones) and `ng_masks/` with the first `masks` of their masks.
fn folders(tmp: &Path, masks: usize) -> (PathBuf, PathBuf, PathBuf) {
    let root = dataset(tmp);
    let cat = ikd_data::Category::open(&root, "tile").unwrap();
    let (ok, ng, ng_masks) = (tmp.join("ok"), tmp.join("ng"), tmp.join("ng_masks"));
    for d in [&ok, &ng, &ng_masks] {
        fs::create_dir_all(d).unwrap();
    }
    let goods = cat.train.iter().chain(cat.test.iter().filter(|t| !t.label).map(|t| &t.path));
    for (i, p) in goods.enumerate() {
        fs::copy(p, ok.join(format!("{i:03}.png"))).unwrap();
    }
    for (i, t) in cat.test.iter().filter(|t| t.label).enumerate() {
        fs::copy(&t.path, ng.join(format!("ng_{i}.png"))).unwrap();
        if i < masks {
            fs::copy(t.mask.as_ref().unwrap(), ng_masks.join(format!("ng_{i}.png"))).unwrap();
        }
    }
    (ok, ng, ng_masks)
}

/// `train_args` with the data flags replaced by `data`.
fn args<'a>(out: &'a str, data: &[&'a str]) -> Vec<&'a str> {
    let base = train_args("unused", out);
    let mut v = vec!["train"];
    v.extend_from_slice(data);
    v.extend_from_slice(&base[5..]);
    v
}

#[test]
fn folders_without_masks_are_scored_at_image_level() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, ng, _) = folders(tmp.path(), 0);
    let run = tmp.path().join("run");
    let (ok, ng, run_s) = (ok.to_str().unwrap(), ng.to_str().unwrap(), run.to_str().unwrap());
    let stdout = ikd_ok(&args(run_s, &["--normal-dir", ok, "--abnormal-dir", ng]));
    assert!(stdout.contains("image-level metrics only"), "{stdout}");
    let text = fs::read_to_string(run.join("metrics.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["pixel_level"], false);
    assert!(v["pixel_auroc"].is_null() && v["au_pro"].is_null(), "absent, not 0: {text}");
    assert!(v["image_auroc"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        v["category"],
        tmp.path().file_name().unwrap().to_str().unwrap(),
        "named after ok/'s parent"
    );
    // 4 + 2 good images: 1 held out (20 %), 4 defective
    assert_eq!(v["images"], 5);
    let config = fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("normal_dir"), "{config}");

    // `ikd test` again prints the same; the report renders the pixel columns as absent.
    let out = ikd_ok(&["test", "--run", run_s]);
    assert!(out.contains("image-level metrics only"), "{out}");
    let report = tmp.path().join("report");
    ikd_ok(&["report", run_s, "--out", report.to_str().unwrap()]);
    let md = fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("image level only"), "{md}");

    // --resume checks the data too: other folders are named.
    let err = ikd_err(&["train", "--out", run_s, "--resume", "--normal-dir", ng]);
    assert!(err.contains("folder.normal_dir"), "{err}");
}

#[test]
fn some_masks_missing_is_an_error_naming_them_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, ng, masks) = folders(tmp.path(), 2);
    let run = tmp.path().join("run");
    let (ok, ng, masks) = (ok.to_str().unwrap(), ng.to_str().unwrap(), masks.to_str().unwrap());
    let data = ["--normal-dir", ok, "--abnormal-dir", ng, "--mask-dir", masks];
    let err = ikd_err(&args(run.to_str().unwrap(), &data));
    assert!(err.contains("2 of 4 defective test images have no mask"), "{err}");
    assert!(err.contains("ng_2.png") && err.contains("ng_3.png"), "{err}");
    // the library names its setting, the command the flag that sets it
    assert!(err.contains("(flag: --allow-missing-masks)"), "{err}");
    assert!(!run.exists(), "nothing trained before the error");
    let mut a = args(run.to_str().unwrap(), &data);
    a.push("--allow-missing-masks");
    let out = ikd_ok(&a);
    assert!(out.contains("2 defective test images without a mask"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(
        (v["pixel_level"].as_bool(), v["images_without_mask"].as_u64()),
        (Some(true), Some(2))
    );
    assert!(v["pixel_auroc"].as_f64().is_some());

    // `ikd test` on other folders: all of ok/ (6 images) and ng/ without masks.
    let run_s = run.to_str().unwrap();
    let out = ikd_ok(&["test", "--run", run_s, "--normal-dir", ok, "--abnormal-dir", ng]);
    assert!(out.contains("image-level metrics only"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!((v["images"].as_u64(), v["pixel_level"].as_bool()), (Some(10), Some(false)));
}
