#!/usr/bin/env bash
# The CUDA check, for a machine with an NVIDIA GPU, its driver and nvcc (the CUDA toolkit):
#   1. builds the workspace's tools with `--features cuda`,
#   2. runs every test that has a CUDA variant (tests named `*cuda*`, compiled only with the feature),
#   3. trains hrnet_w32 on a synthetic MVTec-sized category (256², batch 2) for a fixed number of
#      steps after a warm-up and prints steps/s.
# Usage: xtask/gpu-check.sh [STEPS]        (default 50; CUDA_COMPUTE_CAP defaults to 90, Hopper)
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
steps="${1:-50}"

command -v nvcc >/dev/null || { echo "gpu-check: nvcc not found: install the CUDA toolkit" >&2; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
date -u +"gpu-check: %Y-%m-%d %H:%M UTC, compute capability ${CUDA_COMPUTE_CAP}"

cargo build --release -p xtask -p ikd-cli --features xtask/cuda,ikd-cli/cuda
cargo test --release --workspace --tests --features xtask/cuda,ikd-cli/cuda --no-fail-fast -- cuda
cargo run --release -p xtask --features cuda -- speed --device cuda:0 --backbone hrnet_w32 \
    --image-size 256 --batch-size 2 --warmup 5 --steps "$steps"
