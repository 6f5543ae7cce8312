//! What the exporter writes (inputs, outputs, metadata) and what it refuses.

use ikd_export::{export, read_model_info, Batch, Error, ExportOptions, Size};

use super::{scratch, tested_run, untested_run};

fn dims(v: &[(String, Vec<String>)], name: &str) -> Vec<String> {
    v.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name} in {v:?}")).1.clone()
}

#[test]
fn a_tested_run_bakes_in_its_thresholds_and_says_which_run_it_is() {
    let run = tested_run();
    let out = scratch("tested_export").join("model.onnx");
    let s = export(run, &out, &ExportOptions::default()).unwrap();
    assert!(s.tested);
    let names = ["anomaly_map", "pred_score", "pred_score_normalized", "pred_label", "pred_mask"];
    assert_eq!(s.outputs, names);
    let info = read_model_info(&out).unwrap();
    assert_eq!(info.opset, ikd_export::DEFAULT_OPSET);
    assert_eq!(dims(&info.inputs, "image"), ["N", "3", "H", "W"]);
    assert_eq!(dims(&info.outputs, "anomaly_map"), ["N", "1", "H", "W"]);
    assert_eq!(dims(&info.outputs, "pred_score"), ["N"]);
    assert_eq!(dims(&info.outputs, "pred_mask"), ["N", "1", "H", "W"]);
    assert_eq!(info.nodes, s.nodes);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), s.bytes);

    let metrics = ikd::RunDir::new(run).load_metrics().unwrap().unwrap();
    let d = metrics.decision().unwrap();
    assert_eq!(info.meta("backbone"), Some("hrnet_w18_small"));
    assert_eq!(info.meta("image_size"), Some("64"));
    assert_eq!(info.meta("tested"), Some("true"));
    assert_eq!(info.meta("image_threshold").unwrap().parse::<f64>().unwrap(), d.threshold);
    let pt = info.meta("pixel_threshold").unwrap().parse::<f64>().unwrap();
    assert_eq!(Some(pt), metrics.pixel_threshold());
    assert!(info.meta("teacher_sha256").unwrap().contains("random teacher (seed 8)"));
    let student = ikd::RunDir::new(run).student();
    let sha = ikd_data::sha256_file(&student, false).unwrap();
    assert_eq!(info.meta("student_sha256"), Some(sha.as_str()));
    let settings: ikd::TrainConfig = serde_json::from_str(info.meta("settings").unwrap()).unwrap();
    assert_eq!(settings, ikd::RunDir::new(run).load_config().unwrap());
}

#[test]
fn an_untested_run_exports_map_and_score_only_and_says_so() {
    let out = scratch("untested_export").join("model.onnx");
    let s = export(untested_run(), &out, &ExportOptions::default()).unwrap();
    assert!(!s.tested);
    assert_eq!(s.outputs, ["anomaly_map", "pred_score"]);
    let info = read_model_info(&out).unwrap();
    assert_eq!(info.meta("tested"), Some("false"));
    assert!(info.meta("image_threshold").unwrap().contains("not tested"), "{info:?}");
}

#[test]
fn fixed_batch_size_and_opset_are_written_as_asked() {
    let out = scratch("fixed_export").join("model.onnx");
    let opts =
        ExportOptions { opset: 13, batch: "4".parse().unwrap(), size: "64x96".parse().unwrap() };
    assert_eq!((opts.batch, opts.size), (Batch::Fixed(4), Size::Fixed { height: 64, width: 96 }));
    export(tested_run(), &out, &opts).unwrap();
    let info = read_model_info(&out).unwrap();
    assert_eq!(info.opset, 13);
    assert_eq!(dims(&info.inputs, "image"), ["4", "3", "64", "96"]);
    assert_eq!(dims(&info.outputs, "pred_label"), ["4"]);
}

#[test]
fn what_the_graph_cannot_express_is_an_error_and_writes_nothing() {
    let dir = scratch("refused");
    let out = dir.join("model.onnx");
    // an opset outside the range
    let opts = ExportOptions { opset: 11, ..Default::default() };
    let e = export(tested_run(), &out, &opts).unwrap_err();
    assert!(matches!(e, Error::Options(_)) && e.to_string().contains("opset 11"), "{e}");
    // a size that is not a multiple of 32
    let e = "100x96".parse::<Size>().unwrap_err();
    assert!(e.to_string().contains("multiples of 32"), "{e}");

    // a run with a centre crop: a copy of the tested run whose settings crop
    let run = dir.join("crop");
    std::fs::create_dir_all(&run).unwrap();
    for f in std::fs::read_dir(tested_run()).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), run.join(f.file_name())).unwrap();
        }
    }
    let rd = ikd::RunDir::new(&run);
    let mut config = rd.load_config().unwrap();
    config.load_size = 96;
    config.save(&rd.config()).unwrap();
    let e = export(&run, &out, &ExportOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)) && e.to_string().contains("crop"), "{e}");

    // no trained student
    config.load_size = 64;
    config.save(&rd.config()).unwrap();
    std::fs::remove_file(rd.student()).unwrap();
    let e = export(&run, &out, &ExportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("student.safetensors"), "{e}");
    assert!(!out.exists(), "nothing written");

    // not a run at all
    let e = export(&dir, &out, &ExportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("holds no run"), "{e}");
    assert!(!out.exists());
}
