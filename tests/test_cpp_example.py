"""examples/cpp/run_model.cc: a C++ program registers the op library and runs an optimized model.

Built with g++ against the ONNX Runtime headers the op library's build fetched and linked
against the onnxruntime pip wheel's ``libonnxruntime.so``; run in a clean environment with the
library copied beside the model; its outputs equal the Python session's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from builders import tied_model
from clients import clean_env, run

import icl_onnx
from icl_onnx.pipeline import optimize_file

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "cpp" / "run_model.cc"
IDS_SHAPE = (2, 5)


def ort_include_dir() -> Path:
    """The headers the op library was built with (CMake's ORT_INCLUDE_DIR), fetched if needed."""
    if os.environ.get("ICL_ONNX_ORT_INCLUDE_DIR"):
        return Path(os.environ["ICL_ONNX_ORT_INCLUDE_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "icl-onnx"
    out = run(
        [sys.executable, str(ROOT / "custom_ops/cmake/fetch_ort_headers.py"),
         str(cache / "onnxruntime-1.21-include")],
        timeout=600,
    )  # fmt: skip
    return Path(out.strip().splitlines()[-1])


def build_example(out: Path) -> Path:
    """Compiles run_model.cc against the wheel's libonnxruntime (linked through a symlink)."""
    capi = Path(onnxruntime.__file__).parent / "capi"
    wheel_lib = next(capi.glob("libonnxruntime.so.1.*"))
    libdir = out / "lib"
    libdir.mkdir()
    for name in ("libonnxruntime.so", "libonnxruntime.so.1"):  # the link name and the SONAME
        (libdir / name).symlink_to(wheel_lib)
    exe = out / "run_model"
    run(
        ["g++", "-std=c++17", "-O1", "-Wall", "-Werror", str(EXAMPLE),
         "-I", str(ort_include_dir()), "-L", str(libdir), "-lonnxruntime",
         f"-Wl,-rpath,{libdir}", "-o", str(exe)],
        timeout=600,
    )  # fmt: skip
    return exe


def _static_tied_model(path: Path) -> None:
    proto = tied_model()
    for dim, size in zip(proto.graph.input[0].type.tensor_type.shape.dim, IDS_SHAPE, strict=True):
        dim.dim_value = size
    onnx.save(proto, str(path))


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_cpp_example_runs_an_optimized_model(tmp_path, icl_library):
    _static_tied_model(tmp_path / "tied.onnx")
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    result = optimize_file(tmp_path / "tied.onnx", deploy / "model.onnx")
    assert result.modified
    shutil.copyfile(icl_onnx.library_path(), deploy / "libicl_ops.so")
    exe = build_example(tmp_path)

    proc = subprocess.run(
        [str(exe), str(deploy / "model.onnx"), str(deploy / "libicl_ops.so")],
        capture_output=True, text=True, timeout=120, env=clean_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    name, values = proc.stdout.strip().split(":", 1)
    got = np.array(values.split(), dtype=np.float32)

    ids = (np.arange(np.prod(IDS_SHAPE)) % 7).reshape(IDS_SHAPE).astype(np.int64)
    (expected,) = icl_onnx.create_session(deploy / "model.onnx").run(None, {"ids": ids})
    assert name == "y"
    np.testing.assert_allclose(got, expected.reshape(-1), rtol=1e-6, atol=1e-6)
