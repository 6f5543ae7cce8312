//! `ikd predict` pointed at real folders: mirrored outputs, nothing overwritten, non-images
//! skipped, a broken image reported while the others are scored, decisions and predictions.csv.

use std::path::Path;

use super::{dataset, ikd, ikd_ok, train_args};

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

#[test]
fn predict_on_folders_is_safe_and_says_what_it_did() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap().to_string();
    ikd_ok(&train_args(root.to_str().unwrap(), &run_s)); // trains and tests

    let good = root.join("tile/test/good");
    let inp = tmp.path().join("in");
    copy(&good.join("000.png"), &inp.join("a/000.png"));
    copy(&good.join("001.png"), &inp.join("a/sub/001.png"));
    copy(&good.join("001.png"), &inp.join("b/000.png"));
    std::fs::write(inp.join("a/notes.txt"), "not an image").unwrap();
    std::fs::write(inp.join("b/broken.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let out = tmp.path().join("out");
    let (a, b, out_s) = (
        inp.join("a").to_str().unwrap().to_string(),
        inp.join("b").to_str().unwrap().to_string(),
        out.to_str().unwrap().to_string(),
    );

    let args = ["predict", "--run", &run_s, &a, &b, "--out", &out_s];
    let o = ikd(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "a broken image fails the command at the end: {stderr}");
    assert!(stderr.contains("broken.png") && stderr.contains("1 of 3 images"), "{stderr}");
    assert!(stderr.contains("notes.txt"), "the skipped file is named: {stderr}");
    // the two 000.png keep apart, mirrored below the inputs' common folder
    let (ha, hb) = (out.join("a/000_heatmap.png"), out.join("b/000_heatmap.png"));
    assert!(ha.is_file() && hb.is_file() && out.join("a/000_mask.png").is_file());
    assert!(!out.join("a/sub").exists(), "not recursive");
    let s: ikd::PredictSummary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!((s.images.len(), s.skipped.len(), s.failed.len()), (2, 1, 1));
    let d = s.decision.expect("a tested run decides");
    for p in &s.images {
        assert_eq!(p.anomalous, Some(d.is_anomalous(p.score)));
        // (serde_json reads floats back to within an ulp)
        assert!((p.normalized.unwrap() - d.normalized(p.score)).abs() < 1e-12);
    }
    let csv = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("path,score,normalized,anomalous,defect_fraction"));
    assert_eq!(csv.lines().count(), 3);

    // nothing is overwritten without --overwrite, and nothing is written
    let before = std::fs::read(&ha).unwrap();
    let o = ikd(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("--overwrite"), "{stderr}");
    assert_eq!(std::fs::read(&ha).unwrap(), before);
    std::fs::remove_file(inp.join("b/broken.png")).unwrap();
    ikd_ok(&["predict", "--run", &run_s, &a, &b, "--out", &out_s, "--overwrite", "--recursive"]);
    assert!(out.join("a/sub/001_heatmap.png").is_file(), "recursive outputs mirror subfolders");

    // the same scores as the library's Predictor
    let predictor = ikd::Predictor::open(&run, &candle_core::Device::Cpu).unwrap();
    let img = image::open(inp.join("a/000.png")).unwrap();
    let p = predictor.score(&img).unwrap();
    let batch = predictor.score_batch(&[img.clone(), image::open(inp.join("b/000.png")).unwrap()]);
    let batch = batch.unwrap();
    assert_eq!((p.map.width, p.map.height), (img.width(), img.height()));
    assert_eq!(batch[0].map, p.map, "a batch scores each image as alone");
    let s: ikd::PredictSummary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let listed = s.images.iter().find(|i| i.input.ends_with("a/000.png")).unwrap();
    assert_eq!(listed.score, p.score);
}

#[test]
fn a_run_without_a_test_gives_raw_scores_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let run = tmp.path().join("run");
    let mut args = train_args(root.to_str().unwrap(), run.to_str().unwrap());
    args.push("--no-eval");
    ikd_ok(&args);
    let out = tmp.path().join("out");
    let good = root.join("tile/test/good");
    let o = ikd(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        good.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("never tested: raw scores only"), "{stderr}");
    let csv = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    let line = csv.lines().nth(1).unwrap();
    assert!(line.ends_with(",,,"), "no normalised score, decision or mask: {line}");
    assert!(!out.join("000_mask.png").exists());
}
