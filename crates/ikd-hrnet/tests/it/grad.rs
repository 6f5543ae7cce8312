//! The student trains through `ikd_features`: parameter gradients of a scalar function of the
//! IKD features agree with central finite differences (tiny config, f64, train mode).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use ikd_hrnet::{load_timm, read_safetensors, HrNet, HrNetConfig};

use crate::common::{tiny, to_vec};

fn objective(model: &HrNet, x: &Tensor, weights: &[Tensor]) -> Tensor {
    let feats = model.ikd_features(x, true).unwrap();
    let mut total: Option<Tensor> = None;
    for (f, w) in feats.iter().zip(weights) {
        // a non-linear scalar: sum(w * f) + 0.5 * sum(f^2)
        let s = (f.mul(w).unwrap().sum_all().unwrap()
            + (f.sqr().unwrap().sum_all().unwrap() * 0.5).unwrap())
        .unwrap();
        total = Some(match total {
            None => s,
            Some(t) => (t + s).unwrap(),
        });
    }
    total.unwrap()
}

#[test]
fn parameter_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    let cfg = HrNetConfig::from_json_file(tiny().join("config.json")).unwrap();
    let varmap = VarMap::new();
    let model = HrNet::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F64, &dev)).unwrap();
    load_timm(&varmap, tiny().join("weights.safetensors")).unwrap();
    let io = read_safetensors(tiny().join("io.safetensors")).unwrap();
    // a 32x32 crop of the fixture input, in f64
    let x = io["input"]
        .narrow(2, 8, 32)
        .unwrap()
        .narrow(3, 16, 32)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let weights: Vec<Tensor> = model
        .out_channels()
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let n = 2 * c * 8 * 8;
            let v: Vec<f64> = (0..n).map(|k| ((k * (i + 3)) as f64 * 0.37).sin()).collect();
            Tensor::from_vec(v, (2, c, 8, 8), &dev).unwrap()
        })
        .collect();

    let grads = objective(&model, &x, &weights).backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let vars: Vec<(String, Var)> = [
        ("conv1.weight", 5),
        ("bn1.bias", 3),
        ("layer1.0.conv2.weight", 40),
        ("transition1.1.0.0.weight", 17),
        ("stage3.1.fuse_layers.0.2.0.weight", 9), // upsampled path
        ("stage4.1.fuse_layers.3.0.2.0.weight", 21), // strided path
        ("stage4.1.branches.3.0.bn2.weight", 4),
        ("stage4.1.fuse_layers.0.3.1.bias", 2),
    ]
    .iter()
    .map(|(n, _)| (n.to_string(), data[*n].clone()))
    .collect();
    let idxs = [5usize, 3, 40, 17, 9, 21, 4, 2];
    drop(data);

    let mut nonzero = 0;
    for ((name, var), idx) in vars.iter().zip(idxs) {
        let g =
            to_vec(grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}")))
                [idx];
        let base = to_vec(var.as_tensor());
        let h = 1e-6;
        let eval_at = |delta: f64| {
            let mut p = base.clone();
            p[idx] += delta;
            var.set(&Tensor::from_vec(p, var.shape(), &dev).unwrap()).unwrap();
            let v = objective(&model, &x, &weights).to_scalar::<f64>().unwrap();
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &dev).unwrap()).unwrap();
            v
        };
        let fd = (eval_at(h) - eval_at(-h)) / (2. * h);
        assert!(
            (fd - g).abs() <= 1e-5 * fd.abs().max(g.abs()).max(1e-3),
            "{name}[{idx}]: backward {g} vs finite difference {fd}"
        );
        if g.abs() > 1e-6 {
            nonzero += 1;
        }
    }
    assert!(nonzero >= 6, "too many vanishing gradients ({nonzero} non-zero)");

    // BatchNorm running statistics get no gradient, neither in train nor in eval mode.
    let data = varmap.data().lock().unwrap();
    let rm = data["stage4.1.branches.0.0.bn1.running_mean"].clone();
    drop(data);
    assert!(grads.get(rm.as_tensor()).is_none());
    let eval = model.ikd_features(&x, false).unwrap();
    let g_eval = eval[2].sum_all().unwrap().backward().unwrap();
    assert!(g_eval.get(rm.as_tensor()).is_none());
    let trainable = ikd_hrnet::trainable_vars(&varmap);
    assert_eq!(trainable.len() + 2 * count_bns(&varmap), varmap.all_vars().len());
}

fn count_bns(varmap: &VarMap) -> usize {
    varmap.data().lock().unwrap().keys().filter(|k| k.ends_with(".running_mean")).count()
}
