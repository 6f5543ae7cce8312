#!/usr/bin/env python3
"""The ikd-metrics wheel beside what Python users run today, on one synthetic workload.

    python3 crates/ikd-metrics-py/bench/speed.py [--maps 100] [--side 1024] [--no-anomalib]

Run from the repository root with any Python 3.9+. It makes its own virtual environments under
target/python/ (PyPI only) and reuses them on later runs:
  * speed:    NumPy, SciPy, scikit-learn and the wheel, built here with maturin in release mode;
  * anomalib: anomalib and PyTorch (its metrics are torchmetrics-based), kept apart.
It writes the workload once (target/python/workload/, NumPy files: background scores uniform in
[0, 0.6), one random ellipse of defect scores uniform in [0.3, 1.0) in every other map, as the
Rust bench `cargo bench -p ikd-benches --bench metrics`), then times each method in a process of
its own, which reports its values, its time (the computation only, the maps already in memory)
and its peak resident memory (inputs included), and prints one Markdown table.

Methods: the wheel (ikd_metrics.Accumulator with its default metrics: pixel AUROC, image AUROC,
AU-PRO up to FPR 0.3, AP, F1-max, all in one call); MVTec AD's AU-PRO (compute_pro + trapezoid,
transcribed in tests/mvtec_reference.py); scikit-learn's roc_auc_score (pixel AUROC); anomalib's
AUPRO and AUROC on CPU tensors.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRATE = HERE.parent
ROOT = CRATE.parent.parent
PY = ROOT / "target" / "python"
WORK = PY / "workload"

SPEED_REQUIREMENTS = ["numpy>=1.24", "scipy>=1.10", "scikit-learn>=1.3"]
ANOMALIB_REQUIREMENTS = ["anomalib", "torch"]


# ---------------------------------------------------------------- environments (parent process)

def venv(name, requirements):
    """A virtual environment under target/python holding `requirements` (kept while they stay the
    same); its interpreter."""
    d = PY / name
    py = d / "bin" / "python"
    stamp = d / "ikd-requirements.txt"
    want = "\n".join(requirements)
    if py.is_file() and stamp.is_file() and stamp.read_text() == want:
        return py
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(d)], check=True)
    pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + requirements, check=True)
    stamp.write_text(want)
    return py


def build_wheel():
    """The wheel, built in release mode with the maturin of target/python/build."""
    maturin = venv("build", ["maturin>=1.9,<2"]).parent / "maturin"
    out = PY / "wheels-release"
    for old in out.glob("*.whl") if out.is_dir() else []:
        old.unlink()
    subprocess.run(
        [str(maturin), "build", "--release", "--locked", "-m", str(CRATE / "Cargo.toml"),
         "--out", str(out)],
        check=True,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


# ---------------------------------------------------------------- the workload

def make_workload(n, side):
    import numpy as np

    WORK.mkdir(parents=True, exist_ok=True)
    maps_path, masks_path = WORK / f"maps_{n}x{side}.npy", WORK / f"masks_{n}x{side}.npy"
    if maps_path.is_file() and masks_path.is_file():
        return maps_path, masks_path
    rng = np.random.default_rng(20221108)
    maps = np.empty((n, side, side), dtype=np.float32)
    masks = np.zeros((n, side, side), dtype=np.uint8)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    for i in range(n):
        maps[i] = 0.6 * rng.random((side, side), dtype=np.float32)
        if i % 2 == 1:
            cx, cy = 100 + (side - 200) * rng.random(2)
            a, b = 10 + 100 * rng.random(2)
            t = np.pi * rng.random()
            u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
            v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
            inside = (u / a) ** 2 + (v / b) ** 2 <= 1
            masks[i][inside] = 1
            maps[i][inside] = 0.3 + 0.7 * rng.random(int(inside.sum()), dtype=np.float32)
    np.save(maps_path.with_suffix(".tmp.npy"), maps)
    np.save(masks_path.with_suffix(".tmp.npy"), masks)
    os.replace(maps_path.with_suffix(".tmp.npy"), maps_path)
    os.replace(masks_path.with_suffix(".tmp.npy"), masks_path)
    return maps_path, masks_path


# ---------------------------------------------------------------- the methods (child processes)

def method_ikd(maps, masks):
    import ikd_metrics

    start = time.perf_counter()
    acc = ikd_metrics.Accumulator()
    acc.update(maps, masks)
    m = acc.finish()
    seconds = time.perf_counter() - start
    values = {"pixel_auroc": m["pixel_auroc"], "au_pro_0.3": m["au_pro"][0.3],
              "image_auroc": m["image_auroc"], "average_precision": m["average_precision"]}
    return seconds, values


def method_mvtec(maps, masks):
    sys.path.insert(0, str(CRATE / "tests"))
    import mvtec_reference

    start = time.perf_counter()
    area = mvtec_reference.au_pro(maps, masks, 0.3)
    return time.perf_counter() - start, {"au_pro_0.3": float(area)}


def method_sklearn(maps, masks):
    from sklearn.metrics import roc_auc_score

    start = time.perf_counter()
    auroc = roc_auc_score(masks.ravel(), maps.ravel())
    seconds = time.perf_counter() - start
    image = roc_auc_score(masks.any(axis=(1, 2)), maps.max(axis=(1, 2)))
    return seconds, {"pixel_auroc": float(auroc), "image_auroc": float(image)}


def method_anomalib(maps, masks):
    import torch
    # The torchmetrics metrics behind anomalib's AUPRO and AUROC (those wrap them to read fields
    # of anomalib's batches).
    from anomalib.metrics.aupro import _AUPRO
    from anomalib.metrics.auroc import _AUROC

    torch.set_num_threads(os.cpu_count() or 1)
    preds, target = torch.from_numpy(maps), torch.from_numpy(masks)
    start = time.perf_counter()
    aupro = _AUPRO(fpr_limit=0.3)
    aupro.update(preds, target)
    pro = float(aupro.compute())
    mid = time.perf_counter()
    auroc = _AUROC()
    auroc.update(preds, target)
    roc = float(auroc.compute())
    end = time.perf_counter()
    return end - start, {"au_pro_0.3": pro, "pixel_auroc": roc,
                         "seconds_aupro": mid - start, "seconds_auroc": end - mid}


def child(method, maps_path, masks_path):
    import numpy as np

    maps, masks = np.load(maps_path), np.load(masks_path)
    loaded = rss_mb()
    seconds, values = globals()["method_" + method](maps, masks)
    print(json.dumps({"method": method, "seconds": seconds, "values": values,
                      "rss_inputs_mb": loaded}))


def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_child(python, method, maps_path, masks_path):
    """Runs one method in its own process; its report with the process's peak RSS."""
    proc = subprocess.Popen(
        [str(python), __file__, "--child", method, str(maps_path), str(masks_path)],
        stdout=subprocess.PIPE, text=True,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        return {"method": method, "error": f"exited with status {status >> 8}"}
    report = json.loads(out.strip().splitlines()[-1])
    report["peak_rss_mb"] = usage.ru_maxrss / 1024
    return report


# ---------------------------------------------------------------- main

def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", type=int, default=100)
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--no-anomalib", action="store_true", help="skip anomalib (a large install)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the wheel (the best is kept)")
    args = ap.parse_args()

    python = venv("speed", SPEED_REQUIREMENTS)
    wheel = build_wheel()
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--force-reinstall", "--no-deps", str(wheel)], check=True)
    # the workload, made by the speed environment's NumPy
    paths = subprocess.run(
        [str(python), "-c", f"import sys; sys.path.insert(0, {str(HERE)!r}); import speed; "
         f"print(*speed.make_workload({args.maps}, {args.side}))"],
        check=True, stdout=subprocess.PIPE, text=True,
    ).stdout.split()
    reports = []
    ikd = [run_child(python, "ikd", *paths) for _ in range(args.repeat)]
    ok = [r for r in ikd if "error" not in r]
    reports.append(min(ok, key=lambda r: r["seconds"]) if ok else ikd[0])
    reports += [run_child(python, m, *paths) for m in ("mvtec", "sklearn")]
    if not args.no_anomalib:
        try:
            anomalib = venv("anomalib", ANOMALIB_REQUIREMENTS)
            subprocess.run([str(anomalib), "-c", "from anomalib.metrics.aupro import _AUPRO"],
                           check=True)
            reports.append(run_child(anomalib, "anomalib", *paths))
        except subprocess.CalledProcessError as e:
            reports.append({"method": "anomalib", "error": f"could not be installed or imported ({e})"})

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    print(f"\n{args.maps} maps of {args.side}x{args.side}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{cpu}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}\n")
    base = reports[0].get("seconds")
    print("| method | pixel AUROC | AU-PRO (0.3) | image AUROC | time | wheel faster by | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in reports:
        if "error" in r:
            print(f"| {r['method']} | {r['error']} | | | | | |")
            continue
        v = r["values"]
        fmt = lambda k: f"{v[k]:.6f}" if k in v else "—"
        ratio = "—" if r is reports[0] else f"{r['seconds'] / base:.0f}×"
        print(f"| {r['method']} | {fmt('pixel_auroc')} | {fmt('au_pro_0.3')} | {fmt('image_auroc')} "
              f"| {r['seconds']:.2f} s | {ratio} | {r['peak_rss_mb'] / 1024:.2f} GB "
              f"(inputs {r['rss_inputs_mb'] / 1024:.2f} GB) |")
    print("\n" + json.dumps(reports))


if __name__ == "__main__":
    main()
