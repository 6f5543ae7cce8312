//! Parity with timm's HighResolutionNet on the fixture directories.

use std::path::{Path, PathBuf};

use candle_core::Device;
use ikd_hrnet::{read_safetensors, HrNet, HrNetConfig, KernelPolicy};

use crate::common::{fixtures, rel_l2};

const TOL: f64 = 1e-4;

fn config_of(dir: &Path) -> HrNetConfig {
    let json = dir.join("config.json");
    if json.exists() {
        return HrNetConfig::from_json_file(&json).unwrap();
    }
    let txt = dir.join("config.txt");
    let name = std::fs::read_to_string(&txt)
        .unwrap_or_else(|e| panic!("{}: neither config.json nor config.txt ({e})", dir.display()));
    HrNetConfig::by_name(name.trim()).unwrap()
}

/// The fixture's IKD features (eval, then train mode) and stem running statistics, with the
/// layers on the kernels `policy` allows.
fn check_dir(dir: &Path, policy: KernelPolicy) {
    let cfg = config_of(dir);
    let (model, _varmap) =
        HrNet::from_timm_file(&cfg, dir.join("weights.safetensors"), &Device::Cpu).unwrap();
    let model = model.with_kernel_policy(policy);
    let io = read_safetensors(dir.join("io.safetensors")).unwrap();
    let what = format!("{} ({policy:?})", dir.display());
    let x = &io["input"];
    let n = model.out_channels().len();

    let eval = model.ikd_features(x, false).unwrap();
    for (i, f) in eval.iter().enumerate().take(n) {
        let e = rel_l2(f, &io[&format!("eval_x{i}")]);
        eprintln!("{what}: eval_x{i} relative L2 error {e:.2e}");
        assert!(e < TOL, "{what}: eval_x{i} relative L2 error {e:e}");
    }
    // eval mode leaves the running statistics alone
    let bn1 = model.stem_batch_norms()[0];
    let before = bn1.running_mean();
    let before = crate::common::to_vec(&before.copy().unwrap());

    let train = model.ikd_features(x, true).unwrap();
    for (i, f) in train.iter().enumerate().take(n) {
        let e = rel_l2(f, &io[&format!("train_x{i}")]);
        eprintln!("{what}: train_x{i} relative L2 error {e:.2e}");
        assert!(e < TOL, "{what}: train_x{i} relative L2 error {e:e}");
    }
    let rm = bn1.running_mean();
    let rv = bn1.running_var();
    assert_ne!(crate::common::to_vec(&rm), before, "train mode must update the running mean");
    let e = rel_l2(&rm, &io["bn1_running_mean_after_train"]);
    assert!(e < TOL, "{what}: bn1 running mean error {e:e}");
    let e = rel_l2(&rv, &io["bn1_running_var_after_train"]);
    assert!(e < TOL, "{what}: bn1 running var error {e:e}");
}

/// Every directory of `../shared/fixtures/hrnet/` with the three files.
fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_dir()
                && ["config.json", "weights.safetensors", "io.safetensors"]
                    .iter()
                    .all(|f| p.join(f).exists())
        })
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn parity_with_timm_on_shared_fixtures() {
    let dirs = fixture_dirs();
    assert!(dirs.iter().any(|d| d.ends_with("tiny")), "tiny fixture not found: {dirs:?}");
    for dir in dirs {
        check_dir(&dir, KernelPolicy::default());
    }
}

/// candle's own ops (what runs on other devices) hold the same parity.
#[test]
fn parity_with_timm_on_candles_ops() {
    check_dir(&crate::common::tiny(), KernelPolicy::candle());
}

/// Extra fixture directories named in `IKD_HRNET_FIXTURES` (colon-separated).
#[test]
fn parity_with_timm_on_env_fixtures() {
    let Ok(list) = std::env::var("IKD_HRNET_FIXTURES") else { return };
    for dir in list.split(':').map(str::trim).filter(|s| !s.is_empty()) {
        let dir = PathBuf::from(dir);
        assert!(dir.is_dir(), "IKD_HRNET_FIXTURES: {} is not a directory", dir.display());
        check_dir(&dir, KernelPolicy::default());
    }
}

/// A built-in config named in `config.txt` is accepted.
#[test]
fn config_txt_names_a_builtin_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.txt"), "hrnet_w18_small\n").unwrap();
    assert_eq!(config_of(dir.path()), HrNetConfig::w18_small());
}

/// The fixture's network and input are small enough that every map stays on F(2×2, 3×3),
/// which timm parity covers. hrnet_w18_small at 128² (16 channels at 32 px, 32 at 16 px) takes
/// F(4×4, 3×3) on its first two branches: its IKD features (eval and train) stay within 5e-5 of
/// F(2×2, 3×3)'s.
#[test]
fn winograd_f43_keeps_a_network_where_f23_has_it() {
    if !KernelPolicy::default().effective().winograd_f43 {
        return;
    }
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
    let model = HrNet::new(&HrNetConfig::w18_small(), vb).unwrap();
    let f23_only = KernelPolicy { winograd_f43: false, ..Default::default() };
    let f23_model = model.clone().with_kernel_policy(f23_only);
    let x = (candle_core::Tensor::arange(0f32, (2 * 3 * 128 * 128) as f32, &Device::Cpu).unwrap()
        * 0.618)
        .unwrap()
        .sin()
        .unwrap()
        .reshape((2, 3, 128, 128))
        .unwrap();
    for train in [false, true] {
        // train mode normalises by the batch: the running statistics it updates do not matter
        let f43 = model.ikd_features(&x, train).unwrap();
        let f23 = f23_model.ikd_features(&x, train).unwrap();
        for (i, (a, b)) in f43.iter().zip(&f23).enumerate() {
            let e = rel_l2(a, b);
            // measured ~1e-6 eval, ~8e-6 train (batch norm over a random-init network)
            assert!(e > 0. && e < 5e-5, "train {train}: x{i} F(4×4) vs F(2×2) {e:e}");
        }
    }
}
