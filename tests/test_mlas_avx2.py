"""The benchmarks' copy of onnxruntime with MLAS capped to AVX2 (benchmarks/mlas_avx2.py)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import harness, mlas_avx2

pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64" or "avx512f" not in harness.cpu_flags(),
    reason="capping MLAS to AVX2 changes nothing without AVX-512 (x86-64 only)",
)

# A MatMul on a prepacked W (MLAS's SGEMM: its error against numpy) and a Softmax (MLAS's
# exp and sum kernels, which have AVX-512 versions that round differently: Y's digest).
_CHILD = """
import hashlib, json, numpy as np, onnxruntime as ort
from onnx import helper, numpy_helper
def run(node, x, shape, init=()):
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", 1, x.shape)],
        [helper.make_tensor_value_info("Y", 1, shape)], list(init))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options).run(None, {"X": x})[0]
rng = np.random.default_rng(0)
w = rng.standard_normal((768, 256), dtype=np.float32)
a = rng.standard_normal((64, 768), dtype=np.float32)
y = run(helper.make_node("MatMul", ["X", "W"], ["Y"]), a, [64, 256],
        [numpy_helper.from_array(w, "W")])
s = run(helper.make_node("Softmax", ["X"], ["Y"]), 4 * a, [64, 768])
print(json.dumps({"file": ort.__file__, "digest": hashlib.sha256(s.tobytes()).hexdigest(),
                  "error": float(np.abs(y - a.astype(np.float64) @ w).max())}))
"""


def _run(pythonpath: Path | None) -> dict:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_patch_replaces_only_the_avx512_jump():
    head = b"\x41\xf7\xc2\x00\x00\x01\x00\x74\x0e\x4c\x89\xc0\x48\xf7\xd0\xa8\xe0"
    data = b"\x90" * 32 + head + b"\x0f\x84\x54\x01\x00\x00" + b"\xf6\xc2" * 8
    patched = mlas_avx2.patch_library(data)
    assert patched is not None and len(patched) == len(data)
    at = 32 + len(head)
    assert patched[:at] == data[:at] and patched[at + 6 :] == data[at + 6 :]
    assert patched[at : at + 6] == b"\x66\x0f\x1f\x44\x00\x00"
    assert mlas_avx2.patch_library(data + data) is None  # twice: not ours to guess
    assert mlas_avx2.patch_library(b"\x90" * 64) is None


def test_capped_copy_runs_other_kernels(tmp_path):
    capped = mlas_avx2.capped_onnxruntime(tmp_path)
    if capped.path is None:
        pytest.skip(capped.reason)
    assert mlas_avx2.capped_onnxruntime(tmp_path).path == capped.path  # made once
    native, avx2 = _run(None), _run(capped.path)
    assert Path(avx2["file"]).is_relative_to(capped.path)
    assert not Path(native["file"]).is_relative_to(capped.path)
    assert native["error"] < 1e-3 and avx2["error"] < 1e-3
    # MLAS's AVX2 softmax kernels, not its AVX-512 ones, ran in the copy.
    assert native["digest"] != avx2["digest"]
