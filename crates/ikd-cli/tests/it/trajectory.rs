//! `ikd train` itself against PyTorch: 30 steps of the published recipe over image files
//! (`../shared/fixtures/trajectory/cli/`), held to each step's loss and margins.

use std::path::PathBuf;

use crate::ikd_ok;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/trajectory/cli")
}

#[derive(serde::Deserialize)]
struct Step {
    step: u64,
    loss: f64,
    margins: Vec<f64>,
}

#[derive(serde::Deserialize)]
struct Trajectory {
    data_root: String,
    category: String,
    config: String,
    teacher: String,
    student_init: String,
    image_size: u32,
    load_size: u32,
    batch_size: usize,
    lr: f64,
    shuffle: bool,
    max_steps: u64,
    levels: Vec<usize>,
    level_weights: Vec<f64>,
    alpha: f64,
    beta: f64,
    gamma: f64,
    steps: Vec<Step>,
}

/// Relative difference, against PyTorch's value.
fn rel(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(1e-30)
}

#[test]
fn ikd_train_follows_pytorch_step_by_step_on_image_files() {
    let dir = fixture();
    let t: Trajectory =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trajectory.json")).unwrap())
            .unwrap();
    assert!(!t.shuffle, "the fixture visits the images in file order");
    let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
    let join = |v: &[String]| v.join(",");
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let args: Vec<String> = vec![
        "train".into(),
        "--data-root".into(),
        path(&t.data_root),
        "--category".into(),
        t.category.clone(),
        "--out".into(),
        run.to_str().unwrap().into(),
        "--backbone".into(),
        path(&t.config),
        "--teacher-weights".into(),
        path(&t.teacher),
        "--student-init".into(),
        path(&t.student_init),
        "--image-size".into(),
        t.image_size.to_string(),
        "--load-size".into(),
        t.load_size.to_string(),
        "--batch-size".into(),
        t.batch_size.to_string(),
        "--lr".into(),
        t.lr.to_string(),
        "--levels".into(),
        join(&t.levels.iter().map(|l| l.to_string()).collect::<Vec<_>>()),
        "--level-weights".into(),
        join(&t.level_weights.iter().map(|w| w.to_string()).collect::<Vec<_>>()),
        "--alpha".into(),
        t.alpha.to_string(),
        "--beta".into(),
        t.beta.to_string(),
        "--gamma".into(),
        t.gamma.to_string(),
        "--no-shuffle".into(),
        "--max-steps".into(),
        t.max_steps.to_string(),
        "--no-eval".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ikd_ok(&args);

    let log = std::fs::read_to_string(run.join(ikd::files::TRAIN_LOG)).unwrap();
    let got: Vec<Step> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got.len(), t.steps.len(), "one log line per PyTorch step");
    let mut worst = (0.0f64, String::new());
    for (g, w) in got.iter().zip(&t.steps) {
        // the log counts steps from 1, the fixture from 0
        assert_eq!(g.step, w.step + 1);
        let mut check = |what: String, got: f64, want: f64| {
            let r = rel(got, want);
            assert!(r < 1e-5, "{what}: ikd {got} vs PyTorch {want} (relative {r:e})");
            if r > worst.0 {
                worst = (r, what);
            }
        };
        check(format!("step {} loss", w.step), g.loss, w.loss);
        assert_eq!(g.margins.len(), w.margins.len());
        for (l, (gm, wm)) in g.margins.iter().zip(&w.margins).enumerate() {
            check(format!("step {} margin {l}", w.step), *gm, *wm);
        }
    }
    eprintln!("largest relative difference from PyTorch: {:e} ({})", worst.0, worst.1);
}
