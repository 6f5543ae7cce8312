use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ikd_hrnet::{
    is_skipped_key, load_timm, load_timm_tensors, read_safetensors, save_safetensors, Error, HrNet,
    HrNetConfig,
};

use crate::common::{rel_l2, tiny, to_vec};

fn tiny_cfg() -> HrNetConfig {
    HrNetConfig::from_json_file(tiny().join("config.json")).unwrap()
}

fn fresh(cfg: &HrNetConfig) -> (HrNet, VarMap) {
    let varmap = VarMap::new();
    let model =
        HrNet::new(cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).unwrap();
    (model, varmap)
}

#[test]
fn load_reports_and_skips_head() {
    let (_, varmap) = fresh(&tiny_cfg());
    let t = read_safetensors(tiny().join("weights.safetensors")).unwrap();
    assert_eq!(t["bn1.num_batches_tracked"].dtype(), DType::I64);
    let report = load_timm(&varmap, tiny().join("weights.safetensors")).unwrap();
    assert_eq!(report.loaded, varmap.all_vars().len());
    assert_eq!(report.skipped, t.keys().filter(|k| is_skipped_key(k)).count());
    assert!(report.skipped > 1);
    let data = varmap.data().lock().unwrap();
    assert_eq!(to_vec(data["bn1.running_var"].as_tensor()), to_vec(&t["bn1.running_var"]));
}

#[test]
fn missing_wrong_shape_and_unexpected_tensors_are_errors() {
    let (_, varmap) = fresh(&tiny_cfg());
    let before = to_vec(varmap.data().lock().unwrap()["conv1.weight"].as_tensor());
    let t = read_safetensors(tiny().join("weights.safetensors")).unwrap();

    let mut m: HashMap<String, Tensor> = t.clone();
    m.remove("stage4.1.fuse_layers.3.0.0.0.weight");
    let err = load_timm_tensors(&varmap, &m, "ckpt.safetensors").unwrap_err();
    assert!(matches!(err, Error::MissingTensor { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("stage4.1.fuse_layers.3.0.0.0.weight") && msg.contains("ckpt.safetensors"),
        "{msg}"
    );

    let mut m = t.clone();
    m.insert(
        "stage2.0.branches.1.0.conv1.weight".into(),
        Tensor::zeros((8, 8, 1, 1), DType::F32, &Device::Cpu).unwrap(),
    );
    let msg = load_timm_tensors(&varmap, &m, "ckpt.safetensors").unwrap_err().to_string();
    assert!(
        msg.contains("stage2.0.branches.1.0.conv1.weight")
            && msg.contains("[8, 8, 1, 1]")
            && msg.contains("[8, 8, 3, 3]"),
        "{msg}"
    );

    let mut m = t.clone();
    m.insert("stage5.0.weight".into(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap());
    let msg = load_timm_tensors(&varmap, &m, "ckpt.safetensors").unwrap_err().to_string();
    assert!(msg.contains("stage5.0.weight"), "{msg}");

    // a failed load leaves the variables untouched
    assert_eq!(to_vec(varmap.data().lock().unwrap()["conv1.weight"].as_tensor()), before);

    // a checkpoint for another configuration names the first offending tensor
    let (_, other) = fresh(&HrNetConfig::w18_small());
    let err = load_timm(&other, tiny().join("weights.safetensors")).unwrap_err().to_string();
    assert!(err.contains("weights.safetensors") && err.contains("expects"), "{err}");

    let err = load_timm(&varmap, tiny().join("nope.safetensors")).unwrap_err().to_string();
    assert!(err.contains("nope.safetensors"), "{err}");
}

#[test]
fn half_precision_checkpoints_are_converted() {
    let cfg = tiny_cfg();
    let t = read_safetensors(tiny().join("weights.safetensors")).unwrap();
    let half: HashMap<String, Tensor> = t
        .iter()
        .map(|(k, v)| {
            let v =
                if v.dtype() == DType::F32 { v.to_dtype(DType::BF16).unwrap() } else { v.clone() };
            (k.clone(), v)
        })
        .collect();
    let (model, varmap) = fresh(&cfg);
    load_timm_tensors(&varmap, &half, "bf16").unwrap();
    let (reference, _) =
        HrNet::from_timm_file(&cfg, tiny().join("weights.safetensors"), &Device::Cpu).unwrap();
    let io = read_safetensors(tiny().join("io.safetensors")).unwrap();
    let a = model.forward_t(&io["input"], false).unwrap();
    let b = reference.forward_t(&io["input"], false).unwrap();
    let e = rel_l2(&a[0], &b[0]);
    assert!(e > 0. && e < 3e-2, "bf16 weights give relative error {e}");
}

#[test]
fn save_and_reload_round_trip_in_timm_names() {
    let cfg = tiny_cfg();
    let dir = tempfile::tempdir().unwrap();
    let (model, varmap) =
        HrNet::from_timm_file(&cfg, tiny().join("weights.safetensors"), &Device::Cpu).unwrap();
    let io = read_safetensors(tiny().join("io.safetensors")).unwrap();
    model.forward_t(&io["input"], true).unwrap(); // moves the running statistics
    let path = dir.path().join("student.safetensors");
    save_safetensors(&varmap, &path).unwrap();
    save_safetensors(&varmap, &path).unwrap(); // overwrite in place
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("student.safetensors")],
        "temporary files left"
    );

    // same keys as timm's checkpoint minus the head
    let saved = read_safetensors(&path).unwrap();
    let timm = read_safetensors(tiny().join("weights.safetensors")).unwrap();
    let mut a: Vec<_> = saved.keys().cloned().collect();
    let mut b: Vec<_> = timm.keys().filter(|k| !k.starts_with("classifier")).cloned().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    let (reloaded, _) = HrNet::from_timm_file(&cfg, &path, &Device::Cpu).unwrap();
    let ya = model.forward_t(&io["input"], false).unwrap();
    let yb = reloaded.forward_t(&io["input"], false).unwrap();
    for (p, q) in ya.iter().zip(&yb) {
        assert_eq!(to_vec(p), to_vec(q));
    }
    // and the trained running statistics differ from timm's, so they really were saved
    assert_ne!(to_vec(&saved["bn1.running_mean"]), to_vec(&timm["bn1.running_mean"]));

    // missing folders are made; a path that cannot be a folder is an error naming the file
    save_safetensors(&varmap, dir.path().join("new/dir/x.safetensors")).unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let err = save_safetensors(&varmap, file.join("x.safetensors")).unwrap_err();
    assert!(err.to_string().contains("a-file"), "{err}");
}

#[test]
fn batch_norm_matches_pytorch_formulas() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let bn = ikd_hrnet::BatchNorm2d::new(2, vb.pp("bn")).unwrap();
    let x = Tensor::new(&[1f64, 2., 3., 5., 10., 20., 30., 41.], &Device::Cpu)
        .unwrap()
        .reshape((2, 2, 2, 1))
        .unwrap();
    // channel 0: 1, 2, 10, 20; channel 1: 3, 5, 30, 41
    let y = candle_core::ModuleT::forward_t(&bn, &x, true).unwrap();
    let c0 = [1f64, 2., 10., 20.];
    let mean = c0.iter().sum::<f64>() / 4.;
    let var = c0.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.;
    let y = to_vec(&y);
    assert!((y[0] - (1. - mean) / (var + 1e-5).sqrt()).abs() < 1e-12);
    let rm = to_vec(&bn.running_mean());
    let rv = to_vec(&bn.running_var());
    assert!((rm[0] - 0.1 * mean).abs() < 1e-12);
    assert!((rv[0] - (0.9 + 0.1 * var * 4. / 3.)).abs() < 1e-12);
    // eval mode uses the running statistics
    let ye = to_vec(&candle_core::ModuleT::forward_t(&bn, &x, false).unwrap());
    assert!((ye[0] - (1. - rm[0]) / (rv[0] + 1e-5).sqrt()).abs() < 1e-12);
    // the map's variables are the ones updated
    assert_eq!(to_vec(varmap.data().lock().unwrap()["bn.running_mean"].as_tensor()), rm);
}
