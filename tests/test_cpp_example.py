"""examples/cpp/run_model.cc: a C++ program registers the op library and runs an optimized model.

Built with g++ against the ONNX Runtime headers the op library's build fetched and linked
against the onnxruntime pip wheel's ``libonnxruntime.so``; run in a clean environment with the
library copied beside the model; its outputs equal the Python session's.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import tied_model

import icl_onnx
from icl_onnx.pipeline import optimize_file
from icl_onnx.testing.clients import clean_env
from icl_onnx.testing.cpp_example import build_example

IDS_SHAPE = (2, 5)


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
