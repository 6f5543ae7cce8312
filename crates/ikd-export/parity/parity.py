"""Parity of an `ikd export` graph with ikd's Predictor, on onnxruntime and OpenVINO.

Usage: python parity.py MANIFEST.json

The manifest (written by crates/ikd-export/tests/it/parity.rs) names the model, metadata the
model must carry, tolerances, and cases: an input `image` (.npy, float32 NCHW in [0, 1]) and the
Predictor's outputs for it. Checks `onnx.checker.check_model(full_check=True)`, then runs every
case on both runtimes: anomaly_map within `map_abs` (absolute), pred_score within `score_rel`
(relative), pred_score_normalized within the score's tolerance divided by the test's score
span (`score_span`: the normalisation divides by it) plus `normalized_abs`, pred_label and
pred_mask identical for every image and pixel that is not a tie. A tie is a value within the
runtimes' tolerance of its threshold (a score within `score_rel`, a map value within `map_abs`):
the run's thresholds are F1-optimal cut points, i.e. values the test's own maps and scores take,
so a test image holds pixels exactly at the pixel threshold, and a rounding difference far
below the map tolerance decides them either way. Ties are counted and printed.
Prints one line per case and runtime; exits 1 naming every failure.
"""

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov


def main(path):
    manifest = json.load(open(path))
    model_path = manifest["model"]
    tol = manifest["tolerance"]
    failures = []

    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    print(f"onnx.checker full check: ok (onnx {onnx.__version__}, opset "
          f"{model.opset_import[0].version}, {len(model.graph.node)} nodes)")
    meta = {p.key: p.value for p in model.metadata_props}
    for key, want in manifest["metadata"].items():
        if meta.get(key) != want:
            failures.append(f"metadata {key}: {meta.get(key)!r}, expected {want!r}")
    for key in ["teacher_sha256", "student_sha256", "settings", "image_threshold", "pixel_threshold"]:
        if key not in meta:
            failures.append(f"metadata has no {key}")
    image_threshold = float(meta["image_threshold"])
    pixel_threshold = float(meta["pixel_threshold"])

    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    core = ov.Core()
    # full f32 inference: OpenVINO would otherwise pick bf16/f16 on CPUs that have them
    compiled = core.compile_model(model_path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = [o.name for o in sess.get_outputs()]

    def run_ort(x):
        return dict(zip(names, sess.run(names, {"image": x})))

    def run_ov(x):
        res = compiled({"image": x})
        return {n: np.asarray(res[compiled.output(n)]) for n in names}

    runtimes = [(f"onnxruntime {ort.__version__}", run_ort), (f"openvino {ov.__version__}", run_ov)]
    for case in manifest["cases"]:
        x = np.load(case["image"])
        exp = {k: np.load(v) for k, v in case["expected"].items()}
        for rt, run in runtimes:
            got = run(x)
            where = f"{case['name']} on {rt}"
            if sorted(got) != sorted(exp):
                failures.append(f"{where}: outputs {sorted(got)}, expected {sorted(exp)}")
                continue
            m, em = got["anomaly_map"], exp["anomaly_map"]
            if m.shape != em.shape:
                failures.append(f"{where}: anomaly_map shape {m.shape}, expected {em.shape}")
                continue
            map_err = float(np.max(np.abs(m.astype(np.float64) - em)))
            s, es = got["pred_score"].astype(np.float64), exp["pred_score"].astype(np.float64)
            score_err = float(np.max(np.abs(s - es) / np.maximum(np.abs(es), 1e-30)))
            # the normalised score divides the score by the test's score span: it carries the
            # score's tolerance (score_rel relative) through that division, plus f32 rounding
            n_abs = np.abs(got["pred_score_normalized"].astype(np.float64) - exp["pred_score_normalized"])
            n_tol = tol["score_rel"] * np.abs(es) / tol["score_span"] + tol["normalized_abs"]
            n_err = float(np.max(n_abs))
            n_ok = bool(np.all(n_abs <= n_tol))
            # decisions: identical but for ties (values within the tolerance of the threshold)
            label_tie = np.abs(es - image_threshold) <= tol["score_rel"] * np.abs(es)
            label_off = got["pred_label"].astype(bool) != exp["pred_label"].astype(bool)
            labels_same = not bool(np.any(label_off & ~label_tie))
            pixel_tie = np.abs(em.astype(np.float64) - pixel_threshold) <= tol["map_abs"]
            mask_off = got["pred_mask"].astype(bool) != exp["pred_mask"].astype(bool)
            mask_diff = int(np.sum(mask_off & ~pixel_tie))
            ties = int(np.sum(mask_off & pixel_tie)) + int(np.sum(label_off & label_tie))
            print(f"{where}: shape {tuple(m.shape)}, map max |err| {map_err:.2e} "
                  f"(map max {float(em.max()):.4f}), score rel err {score_err:.2e}, "
                  f"normalised |err| {n_err:.2e}, labels {'same' if labels_same else 'DIFFER'} "
                  f"{got['pred_label'].astype(int).tolist()}, mask pixels differing {mask_diff} "
                  f"of {em.size} ({int(exp['pred_mask'].sum())} set), ties decided otherwise {ties} "
                  f"(of {int(pixel_tie.sum())} pixels and {int(label_tie.sum())} images at a threshold)")
            if not map_err <= tol["map_abs"]:
                failures.append(f"{where}: anomaly_map off by {map_err:.3e} > {tol['map_abs']}")
            if not score_err <= tol["score_rel"]:
                failures.append(f"{where}: pred_score off by {score_err:.3e} relative > {tol['score_rel']}")
            if not n_ok:
                failures.append(f"{where}: pred_score_normalized off by {n_err:.3e}, more than "
                                f"score_rel * score / span + {tol['normalized_abs']}")
            if not labels_same:
                failures.append(f"{where}: pred_label {got['pred_label'].tolist()} (not a tie), "
                                f"expected {exp['pred_label'].astype(bool).tolist()}")
            if mask_diff:
                failures.append(f"{where}: pred_mask differs in {mask_diff} pixels away from the threshold")
    if failures:
        print("PARITY FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"parity: ok ({len(manifest['cases'])} cases x {len(runtimes)} runtimes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
