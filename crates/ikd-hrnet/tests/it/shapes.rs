use std::collections::BTreeMap;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use ikd_hrnet::{is_skipped_key, HrNet, HrNetConfig, CONFIG_NAMES};

use crate::common::fixtures;

/// The model at random init holds exactly the published checkpoint's non-head tensors.
#[test]
fn random_init_matches_published_tensor_list() {
    for name in CONFIG_NAMES {
        let path = fixtures().join(format!("{name}.json"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let expected: BTreeMap<String, Vec<usize>> = json["tensors"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !is_skipped_key(k))
            .map(|(k, v)| {
                let dims = v.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize);
                (k.clone(), dims.collect())
            })
            .collect();
        assert!(expected.len() > 100, "{name}: fixture lists too few tensors");
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        HrNet::new(&HrNetConfig::by_name(name).unwrap(), vb).unwrap();
        let got: BTreeMap<String, Vec<usize>> = ikd_hrnet::named_vars(&varmap)
            .into_iter()
            .map(|(k, v)| (k, v.dims().to_vec()))
            .collect();
        let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: missing {missing:?}, extra {extra:?}"
        );
        for (k, dims) in &expected {
            assert_eq!(&got[k], dims, "{name}: {k}");
        }
    }
}

#[test]
fn output_shapes_and_init() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = HrNet::new(&HrNetConfig::w18_small(), vb).unwrap();
    let x = candle_core::Tensor::randn(0f32, 1., (1, 3, 96, 64), &Device::Cpu).unwrap();
    let ys = model.forward_t(&x, false).unwrap();
    let dims: Vec<_> = ys.iter().map(|y| y.dims().to_vec()).collect();
    assert_eq!(
        dims,
        vec![vec![1, 16, 24, 16], vec![1, 32, 12, 8], vec![1, 64, 6, 4], vec![1, 128, 3, 2]]
    );
    let fs = model.ikd_features(&x, false).unwrap();
    assert!(fs.iter().zip([16, 32, 64, 128]).all(|(f, c)| f.dims() == [1, c, 24, 16]));
    // only the listed levels resized, those exactly as ikd_features has them
    let at = model.ikd_features_at(&x, false, &[1, 3]).unwrap();
    let at_dims: Vec<_> = at.iter().map(|y| y.dims().to_vec()).collect();
    assert_eq!(
        at_dims,
        vec![vec![1, 16, 24, 16], vec![1, 32, 24, 16], vec![1, 64, 6, 4], vec![1, 128, 24, 16]]
    );
    for i in [0, 1, 3] {
        assert_eq!(crate::common::to_vec(&at[i]), crate::common::to_vec(&fs[i]), "level {i}");
    }
    // timm init: BN weight 1 / bias 0, conv weights ~ N(0, 2 / fan_out)
    let data = varmap.data().lock().unwrap();
    let w = crate::common::to_vec(data["stage4.0.branches.0.0.conv1.weight"].as_tensor());
    let var = w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64;
    let expected = 2. / (16. * 9.);
    assert!((var / expected - 1.).abs() < 0.2, "variance {var} vs {expected}");
    assert!(crate::common::to_vec(data["bn1.weight"].as_tensor()).iter().all(|v| *v == 1.));
    assert!(crate::common::to_vec(data["bn1.running_var"].as_tensor()).iter().all(|v| *v == 1.));
}

#[test]
fn wrong_input_is_an_error() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = HrNet::new(&HrNetConfig::w18_small(), vb).unwrap();
    let x = candle_core::Tensor::zeros((1, 1, 64, 64), DType::F32, &Device::Cpu).unwrap();
    assert!(model.forward_t(&x, false).is_err());
}
