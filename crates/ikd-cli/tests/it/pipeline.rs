//! train → checkpoint → resume → test → predict → evaluate.

use std::path::Path;

use super::{dataset, ikd_err, ikd_ok, train_args};

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn train_resume_test_predict_evaluate() {
    let tmp = tempfile::tempdir().unwrap();
    let root = dataset(tmp.path());
    let root_s = root.to_str().unwrap();

    // Uninterrupted: 2 epochs of 2 steps.
    let full = tmp.path().join("full");
    let mut args = train_args(root_s, full.to_str().unwrap());
    args.push("--no-eval");
    ikd_ok(&args);

    // Interrupted after 3 steps, then resumed.
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let mut args = train_args(root_s, run_s);
    args.extend(["--max-steps", "3"]);
    let out = ikd_ok(&args);
    assert!(out.contains("--resume"), "{out}");
    assert!(run.join("checkpoint.safetensors").is_file());
    assert!(!run.join("student.safetensors").exists(), "not finished yet");
    // a different setting on resume is an error naming it; the run is untouched
    let mut args = train_args(root_s, run_s);
    args.extend(["--resume", "--lr", "1e-3"]);
    let err = ikd_err(&args);
    assert!(err.contains("lr: 0.00005 saved, 0.001 given"), "{err}");
    // the device may change (where the run computes, not what it learns): here it is refused
    // only for want of a GPU
    if candle_core::Device::new_cuda(0).is_err() {
        let err = ikd_err(&["train", "--out", run_s, "--resume", "--device", "cuda:0"]);
        assert!(err.contains("--device cuda:0: not available") && !err.contains("saved"), "{err}");
    }
    let err = ikd_err(&["train", "--out", run_s, "--resume", "--category", "grid"]);
    assert!(err.contains("category: tile saved, grid given"), "{err}");
    // a folder without a run says so
    let empty = tmp.path().join("empty");
    let err = ikd_err(&["train", "--out", empty.to_str().unwrap(), "--resume"]);
    assert!(err.contains("holds no run"), "{err}");
    // --resume needs only --out
    ikd_ok(&["train", "--out", run_s, "--resume"]);

    for f in [
        "config.toml",
        "train_log.jsonl",
        "checkpoint.safetensors",
        "student.safetensors",
        "metrics.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let config = ikd::TrainConfig::load(&run.join("config.toml")).unwrap();
    assert_eq!((config.backbone.as_str(), config.lr), ("hrnet_w18_small", 5e-5));
    let log = std::fs::read_to_string(run.join("train_log.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(steps.len(), 4);
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s["step"], i as u64 + 1);
        assert!(s["loss"].as_f64().unwrap().is_finite());
        assert_eq!(s["margins"].as_array().unwrap().len(), 2);
    }
    // Resuming gives the same student as the uninterrupted run.
    let a = std::fs::read(full.join("student.safetensors")).unwrap();
    let b = std::fs::read(run.join("student.safetensors")).unwrap();
    assert!(a == b, "resumed run differs from the uninterrupted one");
    let full_log = std::fs::read_to_string(full.join("train_log.jsonl")).unwrap();
    let losses = |t: &str| -> Vec<f64> {
        t.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap()
            })
            .collect()
    };
    assert_eq!(losses(&full_log), losses(&log));

    // Test (done by train) wrote metrics and heat maps.
    let m = read_json(&run.join("metrics.json"));
    for k in [
        "pixel_auroc",
        "au_pro",
        "pro_ikd200",
        "image_auroc",
        "pixel_ap",
        "f1_max",
        "threshold",
        "image_ap",
        "image_f1_max",
        "image_threshold",
    ] {
        let v = m[k].as_f64().unwrap_or_else(|| panic!("metrics.json lacks {k}"));
        assert!(v.is_finite(), "{k} = {v}");
    }
    // the OK/NG threshold is the best image F1's, over the test images' scores and labels
    let tm: ikd::TestMetrics =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let scores: Vec<f64> = tm.image_results.iter().map(|r| r.score).collect();
    let labels: Vec<bool> = tm.image_results.iter().map(|r| r.anomalous).collect();
    let best = ikd_metrics::image_f1_max(&scores, &labels).unwrap();
    assert_eq!((tm.image_threshold, tm.image_f1_max), (Some(best.threshold), Some(best.f1)));
    let d = tm.decision().unwrap();
    let called: Vec<bool> = scores.iter().map(|&s| d.is_anomalous(s)).collect();
    let tp = called.iter().zip(&labels).filter(|(c, l)| **c && **l).count() as f64;
    let (pred, pos) = (
        called.iter().filter(|c| **c).count() as f64,
        labels.iter().filter(|l| **l).count() as f64,
    );
    assert!((2.0 * tp / (pred + pos) - best.f1).abs() < 1e-12, "the decisions reach F1-max");
    assert_eq!(d.normalized(best.threshold), 0.5);
    assert!(!m["per_defect"].as_object().unwrap().is_empty());
    let heat = run.join("heatmaps");
    let n_heat =
        walk(&heat).into_iter().filter(|p| p.extension().is_some_and(|e| e == "png")).count();
    assert_eq!(n_heat, 6);

    test_evaluate_predict(tmp.path(), &root, &run, &m);
}

/// `ikd test --save-maps` on the finished run, `ikd evaluate` of those maps (the same numbers as
/// its metrics `m`), and `ikd predict` on an image of another size.
fn test_evaluate_predict(tmp: &Path, root: &Path, run: &Path, m: &serde_json::Value) {
    let (root_s, run_s) = (root.to_str().unwrap(), run.to_str().unwrap());
    // Test again with TIFF maps, then score them with `evaluate`: same numbers.
    ikd_ok(&["test", "--run", run_s, "--save-maps"]);
    let maps = run.join("anomaly_maps");
    let tiffs = walk(&maps);
    assert_eq!(tiffs.len(), 6);
    let eval_json = tmp.join("eval.json");
    ikd_ok(&[
        "evaluate",
        "--maps",
        maps.to_str().unwrap(),
        "--data-root",
        root_s,
        "--json",
        eval_json.to_str().unwrap(),
    ]);
    let e = read_json(&eval_json);
    assert_eq!(e[0]["category"], "tile");
    // The synthetic images are 64×64 as the maps: both runs score the same pixels.
    let d = (e[0]["pixel_auroc"].as_f64().unwrap() - m["pixel_auroc"].as_f64().unwrap()).abs();
    assert!(d < 1e-6, "evaluate and test disagree by {d}");

    // Predict on a folder of images of another size.
    let imgs = tmp.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    let src = root.join("tile/test");
    let first_defect =
        walk(&src).into_iter().find(|p| !p.to_string_lossy().contains("good")).unwrap();
    let img = image::open(&first_defect).unwrap().resize_exact(
        80,
        48,
        image::imageops::FilterType::Triangle,
    );
    img.save(imgs.join("odd.jpg")).unwrap();
    let pred = tmp.join("pred");
    ikd_ok(&["predict", "--run", run_s, imgs.to_str().unwrap(), "--out", pred.to_str().unwrap()]);
    let s = read_json(&pred.join("summary.json"));
    assert_eq!(s["images"].as_array().unwrap().len(), 1);
    let mask = image::open(pred.join("odd_mask.png")).unwrap();
    assert_eq!((mask.width(), mask.height()), (80, 48));
    assert!(pred.join("odd_heatmap.png").is_file());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
