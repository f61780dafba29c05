"""Runs one ICL node in an ORT session on the CPU, and compares its output with a reference.

Shared by the op tests (``test_low_rank_ops``, ``test_variant_rows_op``, ``test_opspec``).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
from onnx import TensorProto, helper

import icl_onnx

FLOAT, FLOAT16, BFLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16
DTYPES = {FLOAT: np.float32, FLOAT16: np.float16, BFLOAT16: ml_dtypes.bfloat16}
TOLERANCE = {FLOAT: 1e-5, FLOAT16: 2e-3, BFLOAT16: 1.6e-2}
OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]


def random(shape, dtype, seed):
    """Standard-normal values of ``dtype``, from ``seed``."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def run(node, feeds, y_type, y_shape):
    """Runs one node on the CPU provider; bfloat16 travels as its bit pattern."""

    def info(name, array):
        onnx_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        return helper.make_tensor_value_info(name, onnx_type, array.shape)

    graph = helper.make_graph(
        [node],
        "one_node",
        [info(name, array) for name, array in feeds.items()],
        [helper.make_tensor_value_info("Y", y_type, y_shape)],
    )
    model = helper.make_model(graph, opset_imports=OPSETS)
    session = icl_onnx.create_session(model.SerializeToString())
    import onnxruntime as ort

    binding = session.io_binding()
    for name, array in feeds.items():
        onnx_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        bits = array.view(np.uint16) if onnx_type == BFLOAT16 else array
        binding.bind_ortvalue_input(
            name,
            ort.OrtValue.ortvalue_from_numpy_with_onnx_type(np.ascontiguousarray(bits), onnx_type),
        )
    out = np.full(y_shape, np.nan, dtype=DTYPES[y_type])
    bits = out.view(np.uint16) if y_type == BFLOAT16 else out
    binding.bind_ortvalue_output("Y", ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, y_type))
    session.run_with_iobinding(binding)
    return out


def assert_close(actual, expected, onnx_type):
    """Same dtype and shape, and close within the tolerance of ``onnx_type``."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    tol = TOLERANCE[onnx_type]
    scale = max(1.0, float(np.abs(expected.astype(np.float32)).max()))
    np.testing.assert_allclose(
        actual.astype(np.float32), expected.astype(np.float32), rtol=tol, atol=tol * scale
    )
