#!/usr/bin/env bash
# The CUDA check on a GPU machine without Rust (made by `cargo xtask gpu-bundle`):
#   nvidia-smi; parity of the tiny HRNet's features and of a 12-step trajectory with PyTorch's
#   fixtures and with the CPU; hrnet_w32 256² batch 2 training step and eval pass, ours and
#   PyTorch's; one synthetic category trained and tested at the paper's settings.
# Everything goes into one JSON: $OUT/gpu-check.json (OUT defaults to ./out).
# Usage: bash run.sh            (TRAIN_IMAGES, EPOCHS, RUNS override the sizes)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/out}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log() { echo "run.sh: $*" >&2; }

if ! command -v nvidia-smi >/dev/null 2>&1; then
  log "no NVIDIA GPU here: nvidia-smi not found. This check needs a machine with an NVIDIA GPU and its driver."
  exit 2
fi
if ! nvidia-smi > "$work/nvidia-smi.txt" 2>&1; then
  cat "$work/nvidia-smi.txt" >&2
  log "no NVIDIA GPU here: nvidia-smi failed (above). This check needs a machine with an NVIDIA GPU and its driver."
  exit 2
fi
cat "$work/nvidia-smi.txt"

# the binaries, xz-compressed (Python's lzma where xz is missing)
for b in ikd xtask; do
  if command -v xz >/dev/null 2>&1; then
    xz -dc "$here/bin/$b.xz" > "$work/$b"
  else
    python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' "$here/bin/$b.xz" > "$work/$b"
  fi
  chmod +x "$work/$b"
done

# CUDA libraries: the system's, else those of PyTorch's pip wheels (nvidia/*/lib)
libs="$(python3 - <<'PY' 2>/dev/null
import glob, os, sys
dirs = []
for p in sys.path:
    dirs += glob.glob(os.path.join(p, "nvidia", "*", "lib")) + glob.glob(os.path.join(p, "nvidia", "cu*", "lib*"))
    dirs += glob.glob(os.path.join(p, "torch", "lib"))
print(":".join(d for d in dict.fromkeys(dirs) if os.path.isdir(d)))
PY
)"
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$libs"
ldd "$work/xtask" > "$work/ldd.txt" 2>&1
if grep -q "not found" "$work/ldd.txt"; then
  cat "$work/ldd.txt" >&2
  log "CUDA libraries missing (above): install the CUDA runtime or PyTorch's nvidia-* wheels"
fi

start=$(date +%s)
status=0
"$work/xtask" gpu-run --device cuda:0 --fixtures "$here/fixtures" --json "$work/ours.json" \
  --scratch "$work/scratch" --runs "${RUNS:-20}" --train-images "${TRAIN_IMAGES:-200}" \
  --epochs "${EPOCHS:-50}" > "$work/ours.log" 2>&1 || status=$?
tail -n 40 "$work/ours.log"

# PyTorch's bench on the same GPU (timm from the carried wheel when Python lacks it)
pydeps="$work/py"
if ! python3 -c "import timm" 2>/dev/null; then
  wheel="$(ls "$here"/pytorch/timm-*.whl 2>/dev/null | head -n 1)"
  [ -n "$wheel" ] && python3 -m pip install --quiet --no-deps --no-index --target "$pydeps" "$wheel" >/dev/null 2>&1
fi
PYTHONPATH="$pydeps${PYTHONPATH:+:$PYTHONPATH}" timeout 240 python3 "$here/pytorch/hrnet_bench.py" \
  --device cuda --w32-only --runs "${RUNS:-20}" --warmup 3 --json "$work/pytorch.json" > "$work/pytorch.log" 2>&1
py_status=$?
tail -n 15 "$work/pytorch.log"

python3 - "$work" "$out/gpu-check.json" "$status" "$py_status" "$(( $(date +%s) - start ))" <<'PY'
import json, os, sys
work, dest, status, py_status, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def load(name):
    try:
        return json.load(open(os.path.join(work, name)))
    except Exception as e:
        return {"error": f"{name}: {e}", "log": open(os.path.join(work, name.replace('.json', '.log'))).read()[-4000:] if os.path.exists(os.path.join(work, name.replace('.json', '.log'))) else ""}
doc = {
    "nvidia_smi": open(os.path.join(work, "nvidia-smi.txt")).read(),
    "ldd": open(os.path.join(work, "ldd.txt")).read(),
    "ours": load("ours.json"), "ours_exit": status,
    "pytorch": load("pytorch.json"), "pytorch_exit": py_status,
    "seconds": seconds,
}
json.dump(doc, open(dest, "w"), indent=2)
print(f"wrote {dest}")
PY
exit "$status"
