"""onnxruntime and OpenVINO running an `ikd export` graph, beside the `predictor` bench.

The `predictor` bench (`cargo bench -p ikd-benches --bench predictor`) exports the hrnet_w32
256x256 run it times to target/tmp/predictor_hrnet_w32_256.onnx; this script times the same
graph (normalisation, both HRNets, anomaly map, resize, score and decisions) on a batch of 8
with both runtimes, full f32, on THREADS threads. `benches/onnx/run.sh` runs all of it (and
PyTorch eager) in one go.

Usage: python runtimes_bench.py MODEL.onnx [--batch 8] [--size 256] [--warmup 2] [--runs 7]
"""

import argparse
import os
import statistics
import time

import numpy as np
import onnxruntime as ort
import openvino as ov

THREADS = int(os.environ.get("THREADS", os.cpu_count() or 1))


def bench(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 3, args.size, args.size), dtype=np.float32)
    print(f"onnxruntime {ort.__version__}  openvino {ov.__version__}  threads {THREADS}")
    print("loadavg at start: %.2f %.2f %.2f" % os.getloadavg())

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    core = ov.Core()
    compiled = core.compile_model(args.model, "CPU", {
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": THREADS,
        "PERFORMANCE_HINT": "LATENCY",
    })
    request = compiled.create_infer_request()

    rows = []
    for label, fn in [
        ("onnxruntime", lambda: sess.run(names, {"image": x})),
        ("openvino", lambda: request.infer({"image": x})),
    ]:
        med, mn, times = bench(fn, args.warmup, args.runs)
        print(f"[{label}] runs(ms)={[round(t, 1) for t in times]}", flush=True)
        rows.append((label, med, mn))
    print()
    print(f"{'runtime':<12}  {'median ms':>10}  {'min ms':>10}  {'images/s':>9}")
    for label, med, mn in rows:
        print(f"{label:<12}  {med:>10.1f}  {mn:>10.1f}  {args.batch * 1e3 / med:>9.2f}")
    print("loadavg at end: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
