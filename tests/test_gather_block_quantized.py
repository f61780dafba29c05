"""IclGatherBlockQuantized: its CPU kernel against the numpy reference and against ORT's own
GatherBlockQuantized, bit for bit, across bits, block sizes, zero points and odd sizes."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from builders import IR_VERSION
from onnx import TensorProto, helper

import icl_onnx
from icl_onnx import block_quant, reference
from icl_onnx.testing import cuda_harness

LIBRARY = icl_onnx.library_path()  # the kernel tests fail, never skip, without the library

ONNX_TYPE = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16}
OPSETS = [
    helper.make_opsetid("", 18),
    helper.make_opsetid("ai.icl", 1),
    helper.make_opsetid("com.microsoft", 1),
]


def table(n: int, k: int, bits: int, block_size: int, dtype, symmetric: bool, seed: int = 0):
    """A random [n, k] table quantized to MatMulNBits' layout: (B, scales, zero_points)."""
    w = np.random.default_rng(seed).standard_normal((n, k)).astype(dtype)
    b, scales, zero_points, _ = block_quant.quantize(w, bits, block_size, symmetric=symmetric)
    return b, scales, zero_points


def icl_model(dtype, index_type: int, with_zero_points: bool, **attrs) -> bytes:
    names = ["B", "indices", "scales", "zero_points"][: 4 if with_zero_points else 3]
    types = [TensorProto.UINT8, index_type, ONNX_TYPE[dtype], TensorProto.UINT8]
    node = helper.make_node("IclGatherBlockQuantized", names, ["Y"], domain="ai.icl", **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, t, None) for n, t in zip(names, types, strict=False)],
        [helper.make_tensor_value_info("Y", ONNX_TYPE[dtype], None)],
    )
    return helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION).SerializeToString()


def icl_gather(b, indices, scales, zero_points, provider="CPUExecutionProvider", **attrs):
    index_type = helper.np_dtype_to_tensor_dtype(indices.dtype)
    sess = icl_onnx.create_session(
        icl_model(scales.dtype.type, index_type, zero_points is not None, **attrs), [provider]
    )
    feeds = {"B": b, "indices": indices, "scales": scales}
    if zero_points is not None:
        feeds["zero_points"] = zero_points
    return sess.run(None, feeds)[0]


def ort_gather_block_quantized(b, indices, scales, zero_points, bits: int, block_size: int):
    """ORT's GatherBlockQuantized on the table reshaped as ONNX Runtime GenAI's builder does."""
    n, n_blocks, blob = b.shape
    names = ["data", "indices", "scales", "zero_points"][: 3 if zero_points is None else 4]
    node = helper.make_node(
        "GatherBlockQuantized",
        names,
        ["Y"],
        domain="com.microsoft",
        gather_axis=0,
        quantize_axis=1,
        block_size=block_size,
        bits=bits,
    )
    index_type = helper.np_dtype_to_tensor_dtype(indices.dtype)
    types = [TensorProto.UINT8, index_type, ONNX_TYPE[scales.dtype.type], TensorProto.UINT8]
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, t, None) for n, t in zip(names, types, strict=False)],
        [helper.make_tensor_value_info("Y", ONNX_TYPE[scales.dtype.type], None)],
    )
    model = helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        "data": b.reshape(n, n_blocks * blob),
        "indices": indices,
        "scales": scales.reshape(n, n_blocks),
    }
    if zero_points is not None:
        feeds["zero_points"] = zero_points.reshape(n, -1)
    return sess.run(None, feeds)[0]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


CASES = [
    # bits, block_size, K (not always a multiple of the block), N
    (4, 16, 48, 13),
    (4, 32, 50, 9),
    (4, 128, 200, 7),
    (8, 16, 33, 11),
    (8, 32, 64, 5),
    (8, 64, 100, 6),
]


needs_ort_cuda = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="needs onnxruntime-gpu (CUDAExecutionProvider) and a GPU",
)
#: The kernels' providers; the CUDA one needs a GPU.
PROVIDERS = [
    pytest.param("CPUExecutionProvider", id="cpu"),
    pytest.param("CUDAExecutionProvider", id="cuda", marks=[pytest.mark.gpu, needs_ort_cuda]),
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("bits,block_size,k,n", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("symmetric", [True, False], ids=["no_zero_points", "zero_points"])
def test_kernel_equals_reference_bit_for_bit(bits, block_size, k, n, dtype, symmetric, provider):
    b, scales, zero_points = table(n, k, bits, block_size, dtype, symmetric, seed=k + n)
    indices = np.array([[0, n - 1, -1], [2, -n, 1]], dtype=np.int64)
    attrs = {"K": k, "bits": bits, "block_size": block_size}
    expected = reference.icl_gather_block_quantized(b, indices, scales, zero_points, **attrs)
    assert expected.shape == (2, 3, k) and expected.dtype == dtype
    got = icl_gather(b, indices, scales, zero_points, provider, **attrs)
    assert same_bits(got, expected)
    got32 = icl_gather(b, indices.astype(np.int32), scales, zero_points, **attrs)
    assert same_bits(got32, expected)


@pytest.mark.parametrize("bits,block_size", [(4, 16), (4, 32), (4, 64), (8, 16), (8, 32)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("symmetric", [True, False], ids=["no_zero_points", "zero_points"])
def test_cpu_kernel_equals_ort_gather_block_quantized(bits, block_size, dtype, symmetric):
    n, k = 17, 4 * block_size  # ORT's op reads whole blocks: K a multiple of the block
    b, scales, zero_points = table(n, k, bits, block_size, dtype, symmetric, seed=bits)
    indices = np.array([3, 0, 16, -2, 3], dtype=np.int64)
    ours = icl_gather(b, indices, scales, zero_points, K=k, bits=bits, block_size=block_size)
    theirs = ort_gather_block_quantized(b, indices, scales, zero_points, bits, block_size)
    assert same_bits(ours, theirs)


def test_reference_dequantizes_within_half_a_step():
    w = np.random.default_rng(1).standard_normal((8, 70)).astype(np.float32)
    for bits in (4, 8):
        b, scales, zero_points, layout = block_quant.quantize(w, bits, 32, symmetric=False)
        back = block_quant.dequantize(b, scales, zero_points, layout)
        step = np.repeat(scales.reshape(8, -1), 32, axis=1)[:, :70]
        assert back.shape == w.shape
        assert np.all(np.abs(back - w) <= step / 2 + 1e-6)


@pytest.mark.parametrize("bad", [7, -8, 100])
def test_an_index_out_of_range_is_a_clear_error(bad):
    b, scales, _ = table(7, 32, 4, 32, np.float32, True)
    indices = np.array([1, bad], dtype=np.int64)
    message = f"index {bad} is outside [-7, 7)"
    with pytest.raises(IndexError, match=re.escape(message)):
        reference.icl_gather_block_quantized(b, indices, scales, K=32, bits=4, block_size=32)
    with pytest.raises(Exception, match=re.escape("IclGatherBlockQuantized: " + message)):
        icl_gather(b, indices, scales, None, K=32, bits=4, block_size=32)


BAD_ATTRIBUTES = [
    ({"K": 32, "bits": 3, "block_size": 32}, "bits must be 4 or 8, got 3"),
    ({"K": 32, "bits": 4, "block_size": 24}, "block_size must be a power of 2"),
    ({"K": 32, "bits": 4, "block_size": 8}, "block_size must be a power of 2"),
    ({"K": 0, "bits": 4, "block_size": 32}, "K must be at least 1"),
    ({"bits": 4, "block_size": 32}, "the attribute K is required"),
]


@pytest.mark.parametrize("attrs,message", BAD_ATTRIBUTES)
def test_bad_attributes_fail_at_session_creation(attrs, message):
    with pytest.raises(Exception, match="IclGatherBlockQuantized: " + message):
        icl_onnx.create_session(icl_model(np.float32, TensorProto.INT64, False, **attrs))


try:
    HARNESS_PATH, NO_HARNESS = cuda_harness.harness_path(), ""
except cuda_harness.HarnessNotFoundError as exc:
    HARNESS_PATH, NO_HARNESS = "", f"CUDA kernels not built (no nvcc at build time): {exc}"
needs_cuda_build = pytest.mark.skipif(not HARNESS_PATH, reason=NO_HARNESS)


def cuda_create_session(attrs: dict) -> ort.InferenceSession:
    """A session whose node's kernel is created by the CUDA kernel's Create (no GPU needed)."""
    options = ort.SessionOptions()
    options.register_custom_ops_library(HARNESS_PATH)
    model = icl_model(np.float32, TensorProto.INT64, False, **attrs)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@needs_cuda_build
@pytest.mark.parametrize("attrs,message", BAD_ATTRIBUTES)
def test_the_cuda_kernel_refuses_the_same_attributes_with_the_same_message(attrs, message):
    with pytest.raises(Exception, match=re.escape("IclGatherBlockQuantized (CUDA): ") + message):
        cuda_create_session(attrs)


@needs_cuda_build
def test_the_cuda_kernel_creates_for_good_attributes():
    session = cuda_create_session({"K": 32, "bits": 4, "block_size": 32})
    b, scales, _ = table(3, 32, 4, 32, np.float32, True)
    with pytest.raises(Exception, match="only creates kernels"):
        session.run(None, {"B": b, "indices": np.array([0]), "scales": scales})


@pytest.mark.parametrize(
    "k,message",
    [(64, r"B must have shape \[N, 2, 16\] for K=64"), (200, r"B must have shape \[N, 7, 16\]")],
)
def test_a_table_that_does_not_fit_the_attributes_is_refused(k, message):
    b, scales, _ = table(5, 100, 4, 32, np.float32, True)  # [5, 4, 16]
    with pytest.raises(Exception, match=message):
        icl_gather(b, np.array([0]), scales, None, K=k, bits=4, block_size=32)


def test_zero_points_of_the_wrong_size_are_refused():
    b, scales, zero_points = table(5, 100, 4, 32, np.float32, False)
    with pytest.raises(Exception, match="zero_points must have N \\* ceil"):
        icl_gather(b, np.array([0]), scales, zero_points[:-1], K=100, bits=4, block_size=32)


def test_schema_infers_shape_and_type():
    icl_onnx.schemas.register()
    b, scales, _ = table(5, 100, 4, 32, np.float16, True)
    node = helper.make_node(
        "IclGatherBlockQuantized",
        ["B", "ids", "scales"],
        ["Y"],
        domain="ai.icl",
        K=100,
        bits=4,
        block_size=32,
    )
    graph = helper.make_graph(
        [node, helper.make_node("Identity", ["Y"], ["Z"])],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 3])],
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT16, ["batch", 3, 100])],
        initializer=[
            onnx.numpy_helper.from_array(b, "B"),
            onnx.numpy_helper.from_array(scales, "scales"),
        ],
    )
    model = helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    (y,) = [v.type.tensor_type for v in inferred.graph.value_info if v.name == "Y"]
    assert y.elem_type == TensorProto.FLOAT16
    assert [d.dim_param or d.dim_value for d in y.shape.dim] == ["batch", 3, 100]


def test_onnx_reference_evaluator_runs_the_op():
    b, scales, zero_points = table(6, 40, 8, 16, np.float32, False)
    model = onnx.load_from_string(
        icl_model(np.float32, TensorProto.INT64, True, K=40, bits=8, block_size=16)
    )
    indices = np.array([5, 0], dtype=np.int64)
    feeds = {"B": b, "indices": indices, "scales": scales, "zero_points": zero_points}
    (got,) = reference.evaluator(model).run(None, feeds)
    assert same_bits(got, icl_gather(b, indices, scales, zero_points, K=40, bits=8, block_size=16))


# --- CUDA: the same index error, in an ORT CUDA session (values: the tests above) ----------


@pytest.mark.gpu
@needs_ort_cuda
def test_cuda_kernel_reports_a_bad_index_as_the_cpu_kernel_does():
    b, scales, _ = table(7, 32, 4, 32, np.float32, True)
    indices = np.array([1, -8], dtype=np.int64)
    with pytest.raises(Exception, match=re.escape("index -8 is outside [-7, 7)")):
        icl_gather(b, indices, scales, None, "CUDAExecutionProvider", K=32, bits=4, block_size=32)
