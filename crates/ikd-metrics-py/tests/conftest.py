"""Shared helpers of the ikd-metrics Python tests: the reference fixtures, MVTec AD's AU-PRO
transcribed, deterministic hypothesis settings."""

import json
import os
from pathlib import Path

import numpy as np
from hypothesis import settings

# The same examples on every run (as the Rust suite's fixed proptest seed); explore with
# HYPOTHESIS_PROFILE=explore.
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, max_examples=60, print_blob=True
)
settings.register_profile("explore", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: ../shared/fixtures/metrics beside the checkout (tests read it by relative path).
FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "metrics"


def read_safetensors(path):
    """The tensors of a safetensors file as NumPy arrays (the format: an 8-byte little-endian
    header length, a JSON header, the raw data)."""
    dtypes = {"F32": np.float32, "F64": np.float64, "U8": np.uint8, "I64": np.int64}
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        start, end = t["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype=dtypes[t["dtype"]]).reshape(t["shape"])
    return out


def fixture_cases():
    """(name, scores (N,H,W) float32, masks (N,H,W) uint8, expected values) of every case."""
    cases = []
    for js in sorted(FIXTURES.glob("*.json")):
        tensors = read_safetensors(js.with_suffix(".safetensors"))
        cases.append((js.stem, tensors["scores"], tensors["masks"], json.loads(js.read_text())))
    return cases
