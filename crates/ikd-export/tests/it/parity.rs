//! The parity guarantee: onnxruntime and OpenVINO, running the exported graph, give the
//! `Predictor`'s anomaly maps (within 1e-4 absolute), scores (1e-5 relative), normalised scores
//! (the score's 1e-5 relative divided by the test's score span, which the normalisation divides
//! by, plus 1e-6), labels and masks (identical but for ties: a score or map value within that
//! tolerance of its threshold, which rounding decides either way; the thresholds are F1-optimal
//! cut points, values the test's own maps take); `onnx.checker`'s full check passes. On the
//! `coffee` fixture images (64×64, batch 1 and 4) and non-square crops of the `chelsea` fixture
//! (64×96 batch 2, 128×192 batch 1), with a real-size `hrnet_w18_small`.
//!
//! The comparison runs in Python (`parity/parity.py`): `cargo xtask test` makes the environment
//! (`target/onnx-parity/venv`: onnx, onnxruntime, openvino, numpy from PyPI) and runs this test
//! with `IKD_PARITY_PYTHON` naming its interpreter.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ikd_export::{export, ExportOptions};
use image::{DynamicImage, RgbImage};

use super::{fixtures, scratch, tested_run};

/// Writes a little-endian `.npy` file (`descr` e.g. `<f4`, `|u1`).
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let shape_s = match shape {
        [n] => format!("({n},)"),
        s => format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    // magic (6) + version (2) + length (2) + header + '\n', padded to 64 bytes
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// What the `Predictor` says about a batch, in the graph's layout.
#[derive(Default)]
struct Expected {
    maps: Vec<f32>,
    scores: Vec<f32>,
    normalized: Vec<f64>,
    labels: Vec<u8>,
    masks: Vec<u8>,
}

/// Images as the graph takes them: RGB in [0, 1], NCHW.
fn to_input(images: &[RgbImage]) -> Vec<f32> {
    let mut v = Vec::new();
    for img in images {
        let (w, h) = img.dimensions();
        let hw = (w * h) as usize;
        let start = v.len();
        v.resize(start + 3 * hw, 0.0);
        for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                v[start + c * hw + i] = f32::from(px[c]) / 255.0;
            }
        }
    }
    v
}

/// Writes one case: the input and the expected outputs; returns its manifest entry.
fn write_case(dir: &Path, name: &str, images: &[RgbImage], e: &Expected) -> serde_json::Value {
    let (w, h) = images[0].dimensions();
    let (n, h, w) = (images.len(), h as usize, w as usize);
    let file = |what: &str| dir.join(format!("{name}.{what}.npy"));
    write_npy(&file("image"), "<f4", &[n, 3, h, w], &f32_bytes(&to_input(images)));
    write_npy(&file("anomaly_map"), "<f4", &[n, 1, h, w], &f32_bytes(&e.maps));
    write_npy(&file("pred_score"), "<f4", &[n], &f32_bytes(&e.scores));
    write_npy(&file("pred_score_normalized"), "<f8", &[n], &f64_bytes(&e.normalized));
    write_npy(&file("pred_label"), "|u1", &[n], &e.labels);
    write_npy(&file("pred_mask"), "|u1", &[n, 1, h, w], &e.masks);
    let out = |what: &str| file(what).to_string_lossy().into_owned();
    serde_json::json!({
        "name": name,
        "image": out("image"),
        "expected": {
            "anomaly_map": out("anomaly_map"),
            "pred_score": out("pred_score"),
            "pred_score_normalized": out("pred_score_normalized"),
            "pred_label": out("pred_label"),
            "pred_mask": out("pred_mask"),
        }
    })
}

/// `Predictor::score_batch` on whole images (the run's size: its preprocessing leaves them as
/// they are, and the graph's input is what it feeds the networks).
fn predictor_case(p: &ikd::Predictor, images: &[DynamicImage]) -> (Vec<RgbImage>, Expected) {
    let t = p.config().transform().unwrap();
    let prepared: Vec<RgbImage> = images.iter().map(|i| t.prepare_image(i).unwrap()).collect();
    let preds = p.score_batch(images).unwrap();
    let mut e = Expected::default();
    for pr in preds {
        e.maps.extend(&pr.map.data);
        e.scores.push(pr.score as f32);
        assert_eq!(pr.score, pr.score as f32 as f64, "the score is a map value");
        e.normalized.push(pr.normalized.expect("a tested run"));
        e.labels.push(u8::from(pr.anomalous.expect("a tested run")));
        e.masks
            .extend(pr.mask.expect("a pixel threshold").as_raw().iter().map(|&v| u8::from(v != 0)));
    }
    (prepared, e)
}

/// Non-square input: `Predictor::input_maps` (the maps `score_batch` makes, at the batch's own
/// size), with the `Predictor`'s decision and pixel threshold applied as `predictor_case`'s.
fn input_case(p: &ikd::Predictor, images: &[RgbImage]) -> Expected {
    let (w, h) = images[0].dimensions();
    let x: Vec<f32> = images.iter().flat_map(ikd_data::normalize_chw).collect();
    let x = Tensor::from_vec(x, (images.len(), 3, h as usize, w as usize), &Device::Cpu).unwrap();
    let maps = p.input_maps(&x).unwrap();
    let d = p.decision().expect("a tested run");
    let pt = p.pixel_threshold().expect("a pixel threshold");
    let mut e = Expected::default();
    for m in maps {
        let score = m.max() as f64;
        e.maps.extend(&m.data);
        e.scores.push(score as f32);
        e.normalized.push(d.normalized(score));
        e.labels.push(u8::from(d.is_anomalous(score)));
        e.masks.extend(m.data.iter().map(|&v| u8::from(v as f64 >= pt)));
    }
    e
}

fn crop(img: &RgbImage, (x, y, w, h): (u32, u32, u32, u32)) -> RgbImage {
    image::imageops::crop_imm(img, x, y, w, h).to_image()
}

#[test]
#[ignore = "needs the Python environment (onnx, onnxruntime, openvino) that `cargo xtask test` \
            makes and names in IKD_PARITY_PYTHON"]
fn onnxruntime_and_openvino_give_the_predictors_maps_scores_and_decisions() {
    let python = std::env::var_os("IKD_PARITY_PYTHON").map(PathBuf::from).expect(
        "IKD_PARITY_PYTHON must name a Python with onnx, onnxruntime, openvino and numpy: \
         `cargo xtask test` makes one under target/onnx-parity/venv",
    );
    let run = tested_run();
    let dir = scratch("parity");
    let model = dir.join("model.onnx");
    export(run, &model, &ExportOptions::default()).unwrap();
    let p = ikd::Predictor::open(run, &Device::Cpu).unwrap();

    let coffee = fixtures().join("trajectory/cli/data/coffee/test");
    let images: Vec<DynamicImage> =
        ["good/000.png", "good/001.png", "stain/000.png", "stain/001.png"]
            .iter()
            .map(|f| image::open(coffee.join(f)).unwrap())
            .collect();
    let mut cases = Vec::new();
    for (name, batch) in [("coffee_batch1", &images[..1]), ("coffee_batch4", &images[..])] {
        let (input, e) = predictor_case(&p, batch);
        cases.push(write_case(&dir, name, &input, &e));
    }
    let chelsea = image::open(fixtures().join("data/chelsea.png")).unwrap().to_rgb8();
    let wide: Vec<RgbImage> =
        [(10, 20, 96, 64), (200, 150, 96, 64)].into_iter().map(|r| crop(&chelsea, r)).collect();
    cases.push(write_case(&dir, "chelsea_64x96_batch2", &wide, &input_case(&p, &wide)));
    let big = [crop(&chelsea, (100, 60, 192, 128))];
    cases.push(write_case(&dir, "chelsea_128x192_batch1", &big, &input_case(&p, &big)));

    let d = p.decision().expect("a tested run");
    assert!(d.max > d.min, "the test's scores span a range");
    let manifest = serde_json::json!({
        "model": model.to_string_lossy(),
        "metadata": {
            "backbone": "hrnet_w18_small",
            "image_size": "64",
            "tested": "true",
        },
        "tolerance": {
            "map_abs": 1e-4,
            "score_rel": 1e-5,
            "normalized_abs": 1e-6,
            "score_span": d.max - d.min,
        },
        "cases": cases,
    });
    let manifest_path = dir.join("manifest.json");
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("parity/parity.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&manifest_path)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "parity failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("onnxruntime") && stdout.contains("openvino"), "{stdout}");
}
