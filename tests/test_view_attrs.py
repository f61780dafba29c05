"""One rule for the view attributes: Python (icl_onnx.views), the CPU kernels and the CUDA kernels.

The C++ rule lives in custom_ops/common/view.h (ViewAttrsError, reached through
ReadViewAttrs from every kernel's Create). The CPU kernels' Create runs at session creation
in any onnxruntime. The CUDA kernels' Create needs no GPU either: the test-only harness library
registers ops on the CPU provider whose Create is the CUDA kernel's own (harness
create_probe.cc), so creating a session over a node runs exactly the CUDA Create (and running
it, the CUDA kernel's input front end, stopping before any launch).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import icl_onnx
from icl_onnx.testing import cuda_harness
from icl_onnx.views import ViewAttrs

OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]
FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64

# Attributes no shape of W makes valid, and the message every implementation gives.
BAD = {
    "transpose=3": ({"transpose": 3}, "transpose must be 0 or 1, got 3"),
    "slice_axis=2": ({"slice_axis": 2}, "slice_axis must be 0 or 1, got 2"),
    "slice_start=-1": ({"slice_start": -1}, "slice_start must be >= 0, got -1"),
    "slice_size=-2": (
        {"slice_size": -2},
        "slice_size must be >= 0, or -1 for the rest of the axis, got -2",
    ),
}
BAD_GATHER = {
    **BAD,
    "output_dtype=7": (
        {"output_dtype": 7},
        "output_dtype must be 0, 1 (float), 10 (float16) or 16 (bfloat16), got 7",
    ),
}
GOOD = {"slice_axis": 1, "slice_start": 2, "slice_size": 4, "transpose": 1, "scale": 0.5}

try:
    HARNESS_PATH = cuda_harness.harness_path()
    NO_HARNESS = ""
except cuda_harness.HarnessNotFoundError as exc:
    HARNESS_PATH, NO_HARNESS = "", f"CUDA kernels not built (no nvcc at build time): {exc}"
needs_cuda_build = pytest.mark.skipif(not HARNESS_PATH, reason=NO_HARNESS)


def model(op: str, attrs: dict) -> bytes:
    """One IclMatMul (A[2, K] @ view(W[8, 8])) or IclGather (view(W[8, 8])[I]) node."""
    if op == "IclMatMul":
        inputs = [
            helper.make_tensor_value_info("A", FLOAT, [2, "K"]),
            helper.make_tensor_value_info("W", FLOAT, [8, 8]),
        ]
        node = helper.make_node(op, ["A", "W"], ["Y"], domain="ai.icl", **attrs)
    else:
        inputs = [
            helper.make_tensor_value_info("W", FLOAT, [8, 8]),
            helper.make_tensor_value_info("I", INT64, [3]),
        ]
        node = helper.make_node(op, ["W", "I"], ["Y"], domain="ai.icl", **attrs)
    output = helper.make_tensor_value_info("Y", FLOAT, None)
    graph = helper.make_graph([node], "g", inputs, [output])
    return helper.make_model(graph, opset_imports=OPSETS).SerializeToString()


def cpu_session(op: str, attrs: dict) -> ort.InferenceSession:
    return icl_onnx.create_session(model(op, attrs))


def cuda_create_session(op: str, attrs: dict) -> ort.InferenceSession:
    """A session whose node's kernel is created by the CUDA kernel's Create."""
    options = ort.SessionOptions()
    options.register_custom_ops_library(HARNESS_PATH)
    return ort.InferenceSession(model(op, attrs), options, providers=["CPUExecutionProvider"])


def _cases():
    for name, (attrs, message) in BAD.items():
        yield pytest.param("IclMatMul", attrs, message, id=f"IclMatMul-{name}")
    for name, (attrs, message) in BAD_GATHER.items():
        yield pytest.param("IclGather", attrs, message, id=f"IclGather-{name}")


CASES = list(_cases())


@pytest.mark.parametrize("op,attrs,message", CASES)
def test_python_rule_refuses_bad_attributes(op, attrs, message):
    with pytest.raises(ValueError) as err:
        ViewAttrs.from_attrs(attrs)
    assert str(err.value) == message


@pytest.mark.parametrize("op,attrs,message", CASES)
def test_cpu_kernel_create_refuses_bad_attributes(op, attrs, message):
    with pytest.raises(Exception) as err:
        cpu_session(op, attrs)
    assert f"{op}: {message}" in str(err.value)


@needs_cuda_build
@pytest.mark.parametrize("op,attrs,message", CASES)
def test_cuda_kernel_create_refuses_bad_attributes(op, attrs, message):
    with pytest.raises(Exception) as err:
        cuda_create_session(op, attrs)
    assert f"{op} (CUDA): {message}" in str(err.value)


@pytest.mark.parametrize("op", ["IclMatMul", "IclGather"])
def test_well_formed_attributes_are_accepted_everywhere(op):
    assert ViewAttrs.from_attrs(GOOD).to_attrs() == GOOD
    cpu_session(op, GOOD)


@needs_cuda_build
@pytest.mark.parametrize("op", ["IclMatMul", "IclGather"])
def test_cuda_kernel_create_accepts_well_formed_attributes(op):
    # The probe kernels create, then run the CUDA front end on the inputs and stop before any
    # launch: reaching that answer proves the CUDA Create ran and the front end took the inputs.
    session = cuda_create_session(op, GOOD)
    w = np.zeros((8, 8), np.float32)
    feeds = (
        {"A": np.zeros((2, 4), np.float32), "W": w}  # view(W) is [4, 8]
        if op == "IclMatMul"
        else {"W": w, "I": np.arange(3, dtype=np.int64)}
    )
    with pytest.raises(Exception, match="only creates kernels"):
        session.run(None, feeds)
