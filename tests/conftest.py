"""Fixtures for every test module (pytest loads this file; tests never import it)."""

from __future__ import annotations

import numpy as np
import pytest
from builders import IR_VERSION
from onnx import TensorProto, helper

import icl_onnx


@pytest.fixture(scope="session")
def icl_library() -> str:
    """The ICL op library, loaded into ONNX Runtime and run once; its path.

    A test that needs the library uses this fixture, so it fails (never skips) when the
    library cannot be found, loaded or run: a broken build or a wrong ``ICL_ONNX_LIBRARY``
    is a red run.
    """
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    graph = helper.make_graph(
        [helper.make_node("IclGather", ["W", "ids"], ["y"], domain="ai.icl")],
        "probe",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor("W", TensorProto.FLOAT, weight.shape, weight.reshape(-1).tolist())],
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION)
    try:
        path = icl_onnx.library_path()
        session = icl_onnx.create_session(model.SerializeToString())
        (got,) = session.run(None, {"ids": np.array([2, 0], np.int64)})
    except Exception as e:  # noqa: BLE001 - whatever broke, the library is unusable
        pytest.fail(
            f"the ICL op library cannot be loaded and run ({type(e).__name__}: "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); build it with "
            "`make build`, or point ICL_ONNX_LIBRARY at a built libicl_ops.so",
            pytrace=False,
        )
    np.testing.assert_array_equal(got, weight[[2, 0]])
    return path
