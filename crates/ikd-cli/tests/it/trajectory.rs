//! `ikd train` itself against PyTorch: 30 steps of the published recipe over image files
//! (`../shared/fixtures/trajectory/cli/`), held to each step's loss and margins.

use std::path::PathBuf;

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

/// Runs the fixture's `ikd train` with the kernels capped at `simd` (`IKD_SIMD`) and Winograd on
/// or off (`IKD_WINOGRAD`): each step's log line, and what the command logged.
fn train_on(t: &Trajectory, simd: ikd_kernels::Simd, winograd: bool) -> (Vec<Step>, String) {
    let dir = fixture();
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
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ikd"))
        .args(&args)
        .env("IKD_SIMD", simd.name())
        .env("IKD_WINOGRAD", if winograd { "1" } else { "0" })
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ikd train ({simd}) failed: {stderr}");
    let log = std::fs::read_to_string(run.join(ikd::files::TRAIN_LOG)).unwrap();
    (log.lines().map(|l| serde_json::from_str(l).unwrap()).collect(), stderr)
}

/// `ikd train` on every kernel path this CPU has (an AVX-512 CPU runs an AVX2 machine's path
/// too, capped by `IKD_SIMD`), held to PyTorch's float32 run step by step; the log must name
/// the path.
///
/// The tolerance, 1e-5 relative on every loss and margin, is an error budget: two float32 runs of
/// the same computation start some 1e-7 apart (PyTorch's float32 loss is 2.2e-7 from its float64
/// one at the first step), and this trajectory amplifies a difference about 20-fold over its 30
/// steps (our float64 run starts 9e-8 from PyTorch's float64 one and ends 1.9e-6 from it: `ikd`'s
/// `kernel_paths` tests), so two faithful float32 runs stay within ~6e-6 of each other. Measured
/// 2026-12-07, `Intel(R) Xeon(R) Processor` (AVX-512): 1.7e-6 (im2col, the scalar path and
/// AVX-512), 1.8e-6 (im2col on AVX2, its matrix products on `gemm`'s AVX2 kernels), 1.5e-6 and
/// 1.6e-6 (Winograd, AVX2 and AVX-512), the same to two digits on an `AMD EPYC` (AVX-512) at
/// eb99707; before the AVX2 Winograd kernels, the same binary under
/// `qemu-x86_64 -cpu Haswell` (AVX2 + FMA, no AVX-512): 1.8e-6. The portable `gemm` kernel
/// (multiply, then add: no FMA; a path this project does not run) parts at step 11, 1.8e-5 at
/// step 12: the caveat below. Before issue 26's batch norm fix, the im2col path
/// failed here at step 2 (1.02e-5; it reached 2.5e-1 by step 18 on an AVX2 CPU), natively and under
/// qemu alike. One caveat the budget cannot cover: at step 9 a pixel lies 5.1e-6 (relative) from
/// its level's margin in the float64 run, so a float32 run whose distances there differ from
/// PyTorch's by that much may select it differently and part from PyTorch from step 10 on (1e-4 and
/// more); none of the runs above does.
#[test]
fn ikd_train_follows_pytorch_step_by_step_on_image_files() {
    let t: Trajectory =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("trajectory.json")).unwrap())
            .unwrap();
    assert!(!t.shuffle, "the fixture visits the images in file order");
    let mut seen = Vec::new();
    let paths = ikd_kernels::Simd::supported().into_iter().flat_map(|s| [(s, true), (s, false)]);
    for (simd, winograd) in paths {
        let path = ikd_kernels::KernelPolicy { simd, winograd, ..Default::default() }.path();
        if seen.contains(&path) {
            continue;
        }
        let (got, logged) = train_on(&t, simd, winograd);
        assert!(logged.contains(&format!("kernels: {path}")), "{simd}: the log names the path");
        assert_eq!(got.len(), t.steps.len(), "one log line per PyTorch step");
        let mut worst = (0.0f64, String::new());
        for (g, w) in got.iter().zip(&t.steps) {
            // the log counts steps from 1, the fixture from 0
            assert_eq!(g.step, w.step + 1);
            let mut check = |what: String, got: f64, want: f64| {
                let r = rel(got, want);
                assert!(r < 1e-5, "{path}: {what}: ikd {got} vs PyTorch {want} (relative {r:e})");
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
        eprintln!("{path}: largest relative difference from PyTorch: {:e} ({})", worst.0, worst.1);
        seen.push(path);
    }
}
