//! Every case of `shared/fixtures/metrics/`: scikit-learn's pixel and image AUROC and MVTec AD's
//! AU-PRO at every integration limit the case lists.

use ikd_metrics::{evaluate, MetricsConfig, Sample};
use safetensors::{Dtype, SafeTensors};

use crate::reference::{self, Img};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/metrics");

pub(crate) fn load(name: &str) -> Vec<Img> {
    let bytes = std::fs::read(format!("{DIR}/{name}.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let scores = st.tensor("scores").unwrap();
    let masks = st.tensor("masks").unwrap();
    assert_eq!(scores.dtype(), Dtype::F32, "{name}: scores");
    assert_eq!(masks.dtype(), Dtype::U8, "{name}: masks");
    let shape = scores.shape().to_vec();
    assert_eq!(shape.len(), 3, "{name}: scores shape");
    assert_eq!(masks.shape(), shape.as_slice(), "{name}: masks shape");
    let (n, h, w) = (shape[0], shape[1], shape[2]);
    let s: Vec<f32> = scores
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let m = masks.data();
    (0..n)
        .map(|i| {
            (s[i * h * w..(i + 1) * h * w].to_vec(), m[i * h * w..(i + 1) * h * w].to_vec(), w, h)
        })
        .collect()
}

pub(crate) fn cases() -> Vec<(String, serde_json::Map<String, serde_json::Value>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(DIR).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            out.push((name, json.as_object().unwrap().clone()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_fixture_case_is_reproduced() {
    let cases = cases();
    assert!(cases.len() >= 3, "expected the metrics fixtures in {DIR}");
    for (name, expected) in cases {
        let imgs = load(&name);
        let limits: Vec<(String, f64)> = expected
            .keys()
            .filter_map(|k| {
                k.strip_prefix("au_pro_").map(|l| (k.clone(), l.parse::<f64>().unwrap()))
            })
            .collect();
        assert!(!limits.is_empty(), "{name}: no au_pro_<limit> key");
        let config = MetricsConfig {
            au_pro_limits: limits.iter().map(|l| l.1).collect(),
            ..MetricsConfig::default()
        };
        let samples: Vec<Sample<'_>> =
            imgs.iter().map(|(s, m, w, h)| Sample::new(s, m, *w, *h)).collect();
        let got = evaluate(&samples, &config).unwrap();
        let want = |k: &str| expected[k].as_f64().unwrap_or_else(|| panic!("{name}: {k}"));

        let pixel = got.pixel_auroc.unwrap();
        assert!((pixel - want("pixel_auroc")).abs() < 1e-9, "{name}: pixel AUROC {pixel}");
        let image = got.image_auroc.unwrap();
        assert!((image - want("image_auroc_max")).abs() < 1e-9, "{name}: image AUROC {image}");
        for (key, limit) in &limits {
            let v = got.au_pro_at(*limit).unwrap();
            assert!((v - want(key)).abs() < 1e-6, "{name}: {key} {v} vs {}", want(key));
        }
        // The brute-force references agree too (they share no code with the crate).
        assert!((reference::auroc(&imgs) - want("pixel_auroc")).abs() < 1e-9, "{name}: reference");
        for (key, limit) in &limits {
            assert!(
                (reference::au_pro(&imgs, *limit) - want(key)).abs() < 1e-6,
                "{name}: reference {key}"
            );
        }
    }
}

#[test]
fn fixtures_other_metrics_match_brute_force() {
    for (name, _) in cases() {
        let imgs = load(&name);
        let samples: Vec<Sample<'_>> =
            imgs.iter().map(|(s, m, w, h)| Sample::new(s, m, *w, *h)).collect();
        let got =
            evaluate(&samples, &MetricsConfig::all()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ap = got.average_precision.unwrap();
        assert!((ap - reference::average_precision(&imgs)).abs() < 1e-9, "{name}: AP {ap}");
        let f1 = got.f1_max.unwrap();
        assert!((f1.f1 - reference::f1(&imgs, None)).abs() < 1e-12, "{name}: F1 {f1:?}");
        assert!(
            (f1.f1 - reference::f1(&imgs, Some(f1.threshold))).abs() < 1e-12,
            "{name}: F1 threshold"
        );
        let ikd = got.ikd_pro.unwrap();
        let want = reference::ikd_pro(&imgs, 200, 0.3).unwrap();
        assert!((ikd.value - want).abs() < 1e-9, "{name}: IKD PRO {} vs {want}", ikd.value);
    }
}
