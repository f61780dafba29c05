"""The low-rank term of IclMatMul and IclGather (U, V inputs) on the CPU, against numpy.

``Y = A @ (view(W) + U @ V)`` and ``Y = (view(W) + U @ V)[indices]``, composed with every view
(transpose, slice, scale, cast) and with ``delta_transpose`` (the term is ``(U @ V)^T``).
These tests need the CPU op library and fail when it cannot be loaded.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from builders import CUDA_FP32, IR_VERSION, ort_cuda_missing
from node_runner import BFLOAT16, DTYPES, FLOAT, FLOAT16, OPSETS, assert_close, random, run
from onnx import helper

import icl_onnx
from icl_onnx import reference


# view name -> (attributes, stored W shape) for a view(W) of shape [k, n]
def views(k: int, n: int) -> dict[str, tuple[dict, tuple[int, int]]]:
    return {
        "plain": ({}, (k, n)),
        "transpose": ({"transpose": 1}, (n, k)),
        "slice_transpose_scale": (
            {"slice_axis": 0, "slice_start": 3, "slice_size": n, "transpose": 1, "scale": 0.5},
            (n + 7, k),
        ),
    }


def factors(k, n, rank, transposed, dtype, seed=9):
    """U, V of a delta of shape [k, n] (or, transposed, of U @ V [n, k])."""
    rows, cols = (n, k) if transposed else (k, n)
    return random((rows, rank), dtype, seed), random((rank, cols), dtype, seed + 1) * 0.3


@pytest.mark.parametrize("view", ["plain", "transpose", "slice_transpose_scale"])
@pytest.mark.parametrize("delta_transpose", [0, 1])
@pytest.mark.parametrize("rows", [1, 5, 40, 70])
@pytest.mark.parametrize("with_bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("k,rank", [(70, 4), (300, 16)])
def test_matmul_adds_the_low_rank_term_to_every_view(
    view, delta_transpose, rows, with_bias, k, rank
):
    # N spans several thread-pool chunks on every path; rows > 32 split A @ L over tasks;
    # K=300 spans several packed slices of W; rank 16 is one full AVX-512 vector of columns.
    n = 1100
    attrs, w_shape = views(k, n)[view]
    attrs = {**attrs, "delta_transpose": delta_transpose}
    a = random((rows, k), np.float32, 1)
    w = random(w_shape, np.float32, 2)
    u, v = factors(k, n, rank, delta_transpose, np.float32)
    bias = random((n,), np.float32, 3) if with_bias else None
    names = ["A", "W", "bias" if with_bias else "", "U", "V"]
    feeds = {"A": a, "W": w, "U": u, "V": v} | ({"bias": bias} if with_bias else {})
    node = helper.make_node("IclMatMul", names, ["Y"], domain="ai.icl", **attrs)
    expected = reference.icl_matmul(a, w, bias, u, v, **attrs)
    without = reference.icl_matmul(a, w, bias, **attrs)
    assert np.abs(expected - without).max() > 0.1  # the term is not negligible
    assert_close(run(node, feeds, FLOAT, (rows, n)), expected, FLOAT)


@pytest.mark.parametrize("delta_transpose", [0, 1])
@pytest.mark.parametrize("rows", [3, 8, 40])
def test_matmul_low_rank_term_where_the_threads_split_k(delta_transpose, rows):
    # A narrow float32 W (N=700) of 1030 rows: with AVX2 and AVX-512 the threads split K (four
    # slices of 264 rows; three rows in axpy form, 8 and 40 in panels), each slice into its own
    # partial Y; the low-rank term and the bias are added once, on their sum.
    k, n, rank = 1030, 700, 4
    a = random((rows, k), np.float32, 1)
    w = random((k, n), np.float32, 2)
    u, v = factors(k, n, rank, delta_transpose, np.float32)
    bias = random((n,), np.float32, 3)
    feeds = {"A": a, "W": w, "bias": bias, "U": u, "V": v}
    node = helper.make_node(
        "IclMatMul",
        ["A", "W", "bias", "U", "V"],
        ["Y"],
        domain="ai.icl",
        delta_transpose=delta_transpose,
    )
    expected = reference.icl_matmul(a, w, bias, u, v, delta_transpose=delta_transpose)
    without = reference.icl_matmul(a, w, bias)
    assert np.abs(expected - without).max() > 0.1  # the term is not negligible
    assert_close(run(node, feeds, FLOAT, (rows, n)), expected, FLOAT)


@pytest.mark.parametrize(
    "a_type,w_type", [(FLOAT16, FLOAT16), (BFLOAT16, BFLOAT16), (FLOAT, FLOAT16), (FLOAT16, FLOAT)]
)
def test_matmul_low_rank_term_in_16_bit_and_cast_views(a_type, w_type):
    k, n, rank = 33, 45, 3
    a = random((2, 3, k), DTYPES[a_type], 4)
    w = random((n, k), DTYPES[w_type], 5)
    u, v = factors(k, n, rank, False, DTYPES[w_type])
    node = helper.make_node(
        "IclMatMul", ["A", "W", "", "U", "V"], ["Y"], domain="ai.icl", transpose=1
    )
    expected = reference.icl_matmul(a, w, None, u, v, transpose=1)
    actual = run(node, {"A": a, "W": w, "U": u, "V": v}, a_type, (2, 3, n))
    assert_close(actual, expected, a_type)


@pytest.mark.parametrize("view", ["plain", "transpose", "slice_transpose_scale"])
@pytest.mark.parametrize("delta_transpose", [0, 1])
@pytest.mark.parametrize(
    "w_type,output_dtype", [(FLOAT, 0), (FLOAT16, 0), (FLOAT, FLOAT16), (BFLOAT16, FLOAT)]
)
def test_gather_adds_the_low_rank_row(view, delta_transpose, w_type, output_dtype):
    rows, h, rank = 50, 24, 5
    attrs, w_shape = views(rows, h)[view]
    attrs = {**attrs, "delta_transpose": delta_transpose, "output_dtype": output_dtype}
    w = random(w_shape, DTYPES[w_type], 6)
    u, v = factors(rows, h, rank, delta_transpose, DTYPES[w_type])
    ids = np.array([[0, rows - 1, -1], [7, 7, 30]], dtype=np.int64)
    node = helper.make_node("IclGather", ["W", "I", "U", "V"], ["Y"], domain="ai.icl", **attrs)
    y_type = output_dtype or w_type
    expected = reference.icl_gather(w, ids, u, v, **attrs)
    assert not np.array_equal(expected, reference.icl_gather(w, ids, **attrs))
    assert_close(run(node, {"W": w, "I": ids, "U": u, "V": v}, y_type, (2, 3, h)), expected, y_type)


def test_factors_that_do_not_fit_the_view_are_rejected():
    a, w = random((2, 8), np.float32, 0), random((8, 6), np.float32, 0)
    u, v = factors(8, 6, 2, True, np.float32)  # shaped for delta_transpose=1, given without it
    node = helper.make_node("IclMatMul", ["A", "W", "", "U", "V"], ["Y"], domain="ai.icl")
    with pytest.raises(Exception, match="do not make a delta of view"):
        run(node, {"A": a, "W": w, "U": u, "V": v}, FLOAT, (2, 6))


def test_one_factor_alone_is_rejected():
    w = random((10, 4), np.float32, 0)
    u, _ = factors(10, 4, 2, False, np.float32)
    node = helper.make_node("IclGather", ["W", "I", "U"], ["Y"], domain="ai.icl")
    with pytest.raises(Exception, match="U and V must be given together"):
        run(node, {"W": w, "I": np.array([1], np.int64), "U": u}, FLOAT, (1, 4))


def test_bad_delta_transpose_fails_session_creation():
    node = helper.make_node("IclMatMul", ["A", "W"], ["Y"], domain="ai.icl", delta_transpose=2)
    with pytest.raises(Exception, match="delta_transpose must be 0 or 1"):
        run(
            node,
            {"A": random((1, 3), np.float32, 0), "W": random((3, 2), np.float32, 0)},
            FLOAT,
            (1, 2),
        )


def test_schemas_accept_and_infer_the_factor_inputs():
    node = helper.make_node(
        "IclMatMul",
        ["A", "W", "", "U", "V"],
        ["Y"],
        domain="ai.icl",
        transpose=1,
        delta_transpose=1,
    )
    tensors = {
        "A": (FLOAT, [2, 8]),
        "W": (FLOAT, [6, 8]),
        "U": (FLOAT, [6, 2]),
        "V": (FLOAT, [2, 8]),
    }
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in tensors.items()],
        [helper.make_tensor_value_info("Y", FLOAT, ["rows", "cols"])],
    )
    model = helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION)
    icl_onnx.schemas.register()
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    (y,) = inferred.graph.output
    assert [d.dim_value for d in y.type.tensor_type.shape.dim] == [2, 6]  # from ["rows", "cols"]
    a = random((2, 8), np.float32, 1)
    w, u, v = (
        random((6, 8), np.float32, 2),
        random((6, 2), np.float32, 3),
        random((2, 8), np.float32, 4),
    )
    expected = a @ (w.T + (u @ v).T)
    got = reference.evaluator(model).run(None, {"A": a, "W": w, "U": u, "V": v})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(ort_cuda_missing() is not None, reason=str(ort_cuda_missing()))
@pytest.mark.parametrize("delta_transpose", [0, 1])
def test_cuda_kernels_add_the_low_rank_term(delta_transpose):
    import onnxruntime as ort

    k, n, rank = 37, 45, 3
    a, w = random((4, k), np.float32, 1), random((n, k), np.float32, 2)
    u, v = factors(k, n, rank, delta_transpose, np.float32)
    gu, gv = factors(n, k, rank, delta_transpose, np.float32, seed=20)  # table view [n, k]
    ids = np.array([0, 7, -1], dtype=np.int64)
    attrs = {"transpose": 1, "delta_transpose": delta_transpose}
    nodes = [
        helper.make_node("IclMatMul", ["A", "W", "", "U", "V"], ["Y"], domain="ai.icl", **attrs),
        helper.make_node(
            "IclGather",
            ["W", "I", "GU", "GV"],
            ["E"],
            domain="ai.icl",
            delta_transpose=delta_transpose,
        ),
    ]
    feeds = {"A": a, "I": ids}
    inits = {"W": w, "U": u, "V": v, "GU": gu, "GV": gv}
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
            for name, x in feeds.items()
        ],
        [
            helper.make_tensor_value_info("Y", FLOAT, [4, n]),
            helper.make_tensor_value_info("E", FLOAT, [3, k]),
        ],
        initializer=[onnx.numpy_helper.from_array(x, name) for name, x in inits.items()],
    )
    options = icl_onnx.session_options()
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    session = ort.InferenceSession(
        helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION).SerializeToString(),
        sess_options=options,
        providers=[CUDA_FP32],
    )
    y, e = session.run(None, feeds)
    np.testing.assert_allclose(
        y, reference.icl_matmul(a, w, None, u, v, **attrs), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(
        e,
        reference.icl_gather(w, ids, gu, gv, delta_transpose=delta_transpose),
        rtol=1e-5,
        atol=1e-5,
    )
