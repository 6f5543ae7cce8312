#!/bin/sh
# hrnet_w32 256x256 batch-8 inference on this machine, in one run: ikd::Predictor::score_batch
# (criterion), onnxruntime and OpenVINO on the graph `ikd export` makes of the same run, and
# PyTorch eager (timm's HRNet). Prints the date, the CPU and the load with the figures.
#
#   sh benches/onnx/run.sh            # from the workspace root
#
# VENV (default target/onnx-bench/venv) is made with requirements.txt when missing.
set -eu
VENV=${VENV:-target/onnx-bench/venv}
if ! "$VENV/bin/python" -c 'import onnxruntime, openvino, torch, timm' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r benches/onnx/requirements.txt
fi
THREADS=${THREADS:-$(nproc)}
export THREADS
date -u '+%Y-%m-%d %H:%M UTC'
grep -m1 'model name' /proc/cpuinfo
echo "cores: $(nproc), threads: $THREADS, avx512f: $(grep -c avx512f /proc/cpuinfo)"
uptime
nice cargo bench -p ikd-benches --bench predictor
nice "$VENV/bin/python" benches/onnx/runtimes_bench.py target/tmp/predictor_hrnet_w32_256.onnx
nice "$VENV/bin/python" benches/pytorch/hrnet_bench.py --predict
uptime
