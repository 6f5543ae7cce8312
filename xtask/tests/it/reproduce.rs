//! `cargo xtask reproduce` offline, end to end.

use std::sync::atomic::Ordering;

use crate::fixture::{first_run, reproduce, text, xtask, CATEGORIES};

#[test]
fn reproduce_downloads_trains_tests_and_reports_then_skips_finished_runs() {
    let (w, runs, report, out) = first_run();
    assert!(out.status.success(), "reproduce failed:\n{}", text(out));
    assert_eq!(w.server.gets.load(Ordering::SeqCst), 1, "the archive is downloaded once");
    assert!(
        w.dir.join("data/toy/carpet/train/good").is_dir(),
        "extracted into --dest/<extract_dir>"
    );
    for t in CATEGORIES {
        let run = runs.join(t.name());
        assert!(run.join("student.safetensors").is_file(), "{}: no student", t.name());
        let m: ikd::TestMetrics =
            serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap())
                .unwrap();
        assert_eq!(m.images, 5);
        assert!((0.0..=1.0).contains(&m.pixel_auroc), "{}", m.pixel_auroc);
        let c = ikd::RunDir::new(&run).load_config().unwrap();
        assert_eq!(c.teacher_weights, ikd::TeacherWeights::Hub);
        assert_eq!((c.backbone.as_str(), c.image_size, c.epochs), ("hrnet_w18_small", 64, 1));
    }
    // The report: both categories next to the paper's values.
    let csv = std::fs::read_to_string(report.join("results.csv")).unwrap();
    let carpet = csv.lines().find(|l| l.starts_with("carpet,")).expect("carpet in results.csv");
    assert!(carpet.starts_with("carpet,texture,"), "{carpet}");
    assert!(carpet.contains(",98.7100,94.4900,"), "{carpet}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("results.json")).unwrap())
            .unwrap();
    assert_eq!(json["categories"].as_array().unwrap().len(), 2);
    let all = json["means"].as_array().unwrap().iter().find(|m| m["group"] == "all").unwrap();
    let paper_mean = (98.71 + 97.04) / 2.0;
    assert!((all["paper_pixel_auroc"].as_f64().unwrap() - paper_mean).abs() < 1e-9);
    for f in ["report.md", "report.html", "curves/carpet_roc.png", "curves/grid_pro.png"] {
        assert!(report.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("| carpet | texture |") && md.contains("| 98.71 |"), "{md}");
    let gallery = std::fs::read_dir(report.join("gallery/grid")).unwrap().count();
    assert!(gallery >= 2, "{gallery} gallery images");

    // Again: everything is found finished, nothing downloaded or trained.
    let again = reproduce(w, runs, report, &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(text(&again).matches("skipped").count(), 2, "{}", text(&again));
    assert_eq!(w.server.gets.load(Ordering::SeqCst), 1);

    // `report` on its own, from the runs folder.
    let second = w.dir.join("report-again");
    let out = xtask().arg("report").arg(runs).arg("--out").arg(&second).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let csv2 = std::fs::read_to_string(second.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), csv2.lines().count());
    let empty = w.dir.join("no-runs");
    std::fs::create_dir_all(&empty).unwrap();
    let out =
        xtask().arg("report").arg(&empty).arg("--out").arg(w.dir.join("r3")).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("holds no finished run"), "{}", text(&out));
}

#[test]
fn a_wrong_checksum_is_refused_with_the_file_named() {
    let (w, ..) = first_run();
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&w.manifest).unwrap()).unwrap();
    manifest["sha256"] = serde_json::Value::String("0".repeat(64));
    let bad = w.dir.join("bad.json");
    std::fs::write(&bad, manifest.to_string()).unwrap();
    let dest = w.dir.join("bad-data");
    let out = xtask()
        .args(["download", "--no-progress", "--manifest"])
        .arg(&bad)
        .arg("--url")
        .arg(format!("{}/bad/toy.tar.xz", w.server.base))
        .arg("--dest")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("toy.tar.xz") && t.to_lowercase().contains("sha"), "{t}");
    assert!(!dest.join("toy").exists(), "nothing extracted");
}

#[test]
fn unknown_categories_and_missing_weights_are_clear_errors() {
    let (w, ..) = first_run();
    let out = xtask()
        .args(["reproduce", "--category", "marble", "--manifest"])
        .arg(&w.manifest)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown category `marble`"), "{}", text(&out));
    let out = xtask()
        .args(["weights", "--backbone", "hrnet_w48"])
        .env("HF_HOME", &w.hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("HF_HUB_OFFLINE"), "{}", text(&out));
    let ok = xtask()
        .args(["weights", "--backbone", "hrnet_w18_small"])
        .env("HF_HOME", &w.hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("model.safetensors"));
}

#[test]
fn reproduce_with_slurm_writes_a_job_array_instead_of_training() {
    let (w, _, _, _) = first_run();
    let (runs, jobs) = (w.dir.join("slurm-runs"), w.dir.join("slurm-jobs"));
    let ikd = w.dir.join("my-ikd");
    std::fs::write(&ikd, "").unwrap();
    let out = reproduce(
        w,
        &runs,
        &w.dir.join("slurm-report"),
        &["--slurm", jobs.to_str().unwrap(), "--ikd", ikd.to_str().unwrap(), "--gres", "gpu:1"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2 categories: submit with"), "{}", text(&out));
    assert!(!runs.exists(), "nothing is trained here");
    let train = std::fs::read_to_string(jobs.join("train.sbatch")).unwrap();
    assert!(train.contains("#SBATCH --array=0-1\n"), "{train}");
    assert!(train.contains("#SBATCH --gres=gpu:1\n"), "{train}");
    assert!(train.contains(&format!("IKD={}\n", ikd.display())), "{train}");
    assert!(train.contains("/data/toy\n"), "the extracted dataset: {train}");
    let config = ikd::TrainConfig::load(&jobs.join("config.toml")).unwrap();
    // `--device auto` on a cluster that asks for GPUs: each task's first GPU
    assert_eq!((config.device.as_str(), config.epochs, config.image_size), ("cuda:0", 1, 64));
    let report = std::fs::read_to_string(jobs.join("report.sbatch")).unwrap();
    assert!(report.contains("--paper ") && report.contains("slurm-report"), "{report}");
    assert!(std::fs::read_to_string(jobs.join("submit.sh")).unwrap().contains("afterok"));
}
