//! Parity with the published IKD loss (PyTorch) on `../shared/fixtures/loss/<case>.{json,safetensors}`:
//! every step of every case, in sequence with one loss state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ikd_distill::{IkdLoss, IkdLossConfig};
use serde_json::Value;

use crate::common::{as_tensors, rel, rel_l2, vars};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/loss");

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .unwrap_or_else(|e| panic!("{FIXTURES}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    cases
}

fn num(v: &Value, key: &str, case: &Path) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{}: `{key}` is not a number", case.display()))
}

fn config(js: &Value, case: &Path) -> IkdLossConfig {
    let levels = js["levels"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no `levels`", case.display()))
        .iter()
        .map(|l| l.as_u64().unwrap() as usize)
        .collect();
    let weights = js["weights"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no `weights`", case.display()))
        .iter()
        .map(|w| w.as_f64().unwrap())
        .collect();
    IkdLossConfig {
        alpha: num(js, "alpha", case),
        beta: num(js, "beta", case),
        gamma: num(js, "gamma", case),
        levels,
        weights,
        mining: true,
        context: true,
    }
}

fn get<'a>(tensors: &'a HashMap<String, Tensor>, key: &str, case: &Path) -> &'a Tensor {
    tensors.get(key).unwrap_or_else(|| panic!("{}: tensor `{key}` missing", case.display()))
}

/// Runs one case; returns how many (step, level) pairs kept no pixel.
fn run_case(json_path: &Path) -> usize {
    let js: Value = serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    let st_path = json_path.with_extension("safetensors");
    let tensors = candle_core::safetensors::load(&st_path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", st_path.display()));
    let cfg = config(&js, json_path);
    let steps = js["steps"].as_array().expect("steps");
    assert!(!steps.is_empty(), "{}: no steps", json_path.display());
    let max_level = *cfg.levels.iter().max().unwrap();
    let mut loss = IkdLoss::new(cfg.clone()).unwrap();
    let mut empty = 0;
    for (k, step) in steps.iter().enumerate() {
        let what = format!("{} step {k}", json_path.display());
        // Feature slices indexed by level; the unused slots hold a placeholder the loss never reads.
        let placeholder =
            Tensor::zeros((1, 1, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut teacher = vec![placeholder.clone(); max_level + 1];
        let mut student = vec![placeholder; max_level + 1];
        for &l in &cfg.levels {
            teacher[l] = get(&tensors, &format!("step{k}_t{l}"), json_path).clone();
            student[l] = get(&tensors, &format!("step{k}_s{l}"), json_path).clone();
        }
        let student_vars = vars(&student);
        let out = loss.forward(&teacher, &as_tensors(&student_vars)).unwrap();

        let want_loss = num(step, "loss", json_path);
        let got_loss = out.total.to_scalar::<f32>().unwrap() as f64;
        assert!(
            rel(got_loss, want_loss) <= 1e-5,
            "{what}: loss {got_loss} vs published {want_loss}"
        );
        for (i, &l) in cfg.levels.iter().enumerate() {
            let want = step["margin"][l.to_string()]
                .as_f64()
                .unwrap_or_else(|| panic!("{what}: no margin for level {l}"));
            let got = out.margins[i];
            assert!(rel(got, want) <= 1e-5, "{what} level {l}: margin {got} vs published {want}");
            assert_eq!(loss.state().margins[i], got, "{what}: state not updated");
            if out.kept[i] == 0 {
                empty += 1;
            }
        }
        let grads = out.total.backward().unwrap();
        for &l in &cfg.levels {
            let want = get(&tensors, &format!("step{k}_grad_s{l}"), json_path);
            let got = grads
                .get(student_vars[l].as_tensor())
                .unwrap_or_else(|| panic!("{what}: no gradient for student level {l}"));
            assert_eq!(got.dims(), want.dims(), "{what}: gradient shape, level {l}");
            let e = rel_l2(got, want);
            assert!(e <= 1e-4, "{what} level {l}: gradient relative L2 error {e}");
        }
        for (l, v) in student_vars.iter().enumerate() {
            if !cfg.levels.contains(&l) {
                assert!(grads.get(v.as_tensor()).is_none(), "{what}: gradient on unused level {l}");
            }
        }
    }
    assert_eq!(loss.state().steps, steps.len() as u64);
    empty
}

#[test]
fn every_fixture_case_matches_the_published_loss_step_by_step() {
    let cases = cases();
    assert!(cases.len() >= 3, "expected the loss fixtures in {FIXTURES}, found {cases:?}");
    let mut empty = 0;
    for case in &cases {
        empty += run_case(case);
    }
    // The fixtures include a step where no pixel reaches the margin: make sure that path ran.
    assert!(empty > 0, "no fixture step exercised the no-pixel-kept path");
}
