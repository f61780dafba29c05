"""The op library is self-contained: copied alone into any folder, it loads and runs anywhere.

No run path, no library beside it, no preload by icl_onnx: a host that registers the file
(ONNX Runtime GenAI's ``custom_ops_library``, a C++ program, Python with or without
icl_onnx) needs nothing else. Checked by copying it into a fresh folder and registering it
from a subprocess whose environment is empty.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import icl_onnx

# What a CPU build needs from the system: the C library and its loader (the C++ runtime is
# linked in; the CUDA runtime is linked in too, and cuBLAS is opened only on a CUDA run).
ALLOWED_NEEDED = {
    "libc.so.6",
    "libm.so.6",
    "ld-linux-x86-64.so.2",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
}

_RUN = textwrap.dedent(
    """
    import sys
    import numpy as np
    if sys.argv[4] == "with-icl_onnx":
        import icl_onnx  # noqa: F401  (must not be needed, nor get in the way)
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.register_custom_ops_library(sys.argv[1])
    session = ort.InferenceSession(sys.argv[2], options, providers=["CPUExecutionProvider"])
    a = np.load(sys.argv[3])
    np.save(sys.argv[3], session.run(None, {"A": a})[0])
    """
)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is needed to inspect the op library (binutils / libc-bin)")
    return path


@pytest.fixture(scope="module")
def lone_library(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lone")
    return Path(shutil.copy(icl_onnx.library_path(), folder / "libicl_ops.so"))


def test_ldd_finds_every_dependency(lone_library):
    out = subprocess.run(
        [_tool("ldd"), str(lone_library)], capture_output=True, text=True, env={}, check=True
    ).stdout
    assert "not found" not in out, out


def test_no_run_path_and_only_system_libraries(lone_library):
    dynamic = subprocess.run(
        [_tool("readelf"), "-d", str(lone_library)], capture_output=True, text=True, check=True
    ).stdout
    assert "RPATH" not in dynamic and "RUNPATH" not in dynamic, dynamic
    needed = {line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line}
    assert needed <= ALLOWED_NEEDED, needed - ALLOWED_NEEDED


@pytest.mark.parametrize("host", ["without-icl_onnx", "with-icl_onnx"])
def test_lone_copy_runs_icl_matmul_from_an_empty_environment(lone_library, tmp_path, host):
    k, n, m = 37, 45, 3
    rng = np.random.default_rng(5)
    w = rng.standard_normal((n, k)).astype(np.float32)
    a = rng.standard_normal((m, k)).astype(np.float32)
    node = helper.make_node("IclMatMul", ["A", "W"], ["Y"], domain="ai.icl", transpose=1)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]
    )
    model_path = tmp_path / "m.onnx"
    model_path.write_bytes(model.SerializeToString())
    data = tmp_path / "a.npy"
    np.save(data, a)
    # env={}: no PATH, no LD_LIBRARY_PATH, no ICL_ONNX_LIBRARY; the venv's interpreter finds
    # its own site-packages through pyvenv.cfg. The working folder is the library's.
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, str(lone_library), str(model_path), str(data), host],
        env={},
        cwd=lone_library.parent,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(data), a @ w.T, rtol=1e-5, atol=1e-5)
