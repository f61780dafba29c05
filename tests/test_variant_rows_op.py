"""IclMatMul with ``variant_ids``: each batch row of A through its own variant's low-rank term.

``Y[b] = A[b] @ (view(W) + delta(U[ids[b]], V[ids[b]])) + bias`` for the B batch rows of A (A's
rows in B equal, contiguous blocks; U and V stack one pair of factors per variant), against
:func:`icl_onnx.reference.icl_matmul`, on the CPU kernel (and in an ORT CUDA session where a GPU
is present). Refusals are one line naming the problem, and the session stays usable after one.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
from builders import CUDA_FP32, IR_VERSION, ort_cuda_missing
from node_runner import assert_close, random, run
from onnx import TensorProto, helper

import icl_onnx
from icl_onnx import reference
from icl_onnx.testing.view_cases import view_cases

FLOAT, FLOAT16, BFLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16
DTYPES = {FLOAT: np.float32, FLOAT16: np.float16, BFLOAT16: ml_dtypes.bfloat16}
OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]
INPUTS = ["A", "W", "bias", "U", "V", "ids"]
BIG = 2**63 - 1


def stacked_factors(variants, k, n, rank, transposed, dtype, seed=9):
    """U [NV, k, r], V [NV, r, n] (transposed: U [NV, n, r], V [NV, r, k]); variant 0 all zero,
    as the base of a batched model has no delta."""
    rows, cols = (n, k) if transposed else (k, n)
    u = random((variants, rows, rank), np.float32, seed)
    v = random((variants, rank, cols), np.float32, seed + 1) * 0.3
    u[0], v[0] = 0.0, 0.0
    return u.astype(dtype), v.astype(dtype)


def variant_node(with_bias: bool = False, **attrs):
    names = ["A", "W", "bias" if with_bias else "", "U", "V", "ids"]
    return helper.make_node("IclMatMul", names, ["Y"], domain="ai.icl", **attrs)


def check(a, w, u, v, ids, bias=None, y_type=FLOAT, **attrs):
    """Runs one node with variant_ids and compares it with the reference; returns Y."""
    feeds = {"A": a, "W": w, "U": u, "V": v, "ids": ids} | (
        {"bias": bias} if bias is not None else {}
    )
    node = variant_node(bias is not None, **attrs)
    want = reference.icl_matmul(a, w, bias, u, v, ids, **attrs)
    got = run(node, feeds, y_type, want.shape)
    assert_close(got, want, y_type)
    return got


@pytest.mark.parametrize("view", ["plain", "transpose", "row_slice", "slice_transpose_scale"])
@pytest.mark.parametrize("delta_transpose", [0, 1])
@pytest.mark.parametrize("with_bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("a_rank", [2, 3], ids=["a_flat", "a_3d"])
def test_each_batch_row_gets_its_own_variant_on_every_view(
    view, delta_transpose, with_bias, a_rank
):
    # N spans several thread-pool chunks on every path; ids repeat a variant in scattered
    # batch rows (gathered) and give the base (variant 0, zero factors) to one row.
    k, n, rank, variants = 70, 600, 4, 4
    batch, per_row = 6, 3
    attrs, w_shape = view_cases(k, n)[view]
    attrs = {**attrs, "delta_transpose": delta_transpose}
    a = random((batch, per_row, k), np.float32, 1)
    a = a if a_rank == 3 else a.reshape(batch * per_row, k)
    w = random(w_shape, np.float32, 2)
    u, v = stacked_factors(variants, k, n, rank, delta_transpose, np.float32)
    ids = np.array([2, 0, 2, 3, 1, 2], np.int64)
    bias = random((n,), np.float32, 3) if with_bias else None
    got = check(a, w, u, v, ids, bias, **attrs)
    rows = got.reshape(batch, per_row, n)
    base = reference.icl_matmul(a, w, bias, **attrs).reshape(batch, per_row, n)
    assert_close(rows[1], base[1], FLOAT)  # variant 0: the base itself
    for b in (0, 2, 3, 4, 5):
        assert np.abs(rows[b] - base[b]).max() > 0.1  # every other row has its own term
    assert np.abs(rows[0] - rows[3]).max() > 0.1  # ... which differs between variants


@pytest.mark.parametrize(
    "a_type,w_type",
    [
        (FLOAT16, FLOAT16),
        (BFLOAT16, BFLOAT16),
        (FLOAT, FLOAT16),
        (FLOAT16, FLOAT),
        (BFLOAT16, FLOAT),
    ],
)
@pytest.mark.parametrize("delta_transpose", [0, 1])
def test_variants_in_16_bit_and_cast_views(a_type, w_type, delta_transpose):
    k, n, rank = 33, 45, 3
    a = random((4, 2, k), DTYPES[a_type], 4)
    w = random((n, k), DTYPES[w_type], 5)
    u, v = stacked_factors(3, k, n, rank, delta_transpose, DTYPES[w_type])
    bias = random((n,), DTYPES[a_type], 6)
    ids = np.array([1, 2, 0, 1], np.int64)
    check(a, w, u, v, ids, bias, a_type, transpose=1, delta_transpose=delta_transpose)


@pytest.mark.parametrize("view", ["plain", "transpose"])
@pytest.mark.parametrize(
    "batch,per_row,ids",
    [
        (1, 5, [2]),  # one batch row
        (64, 1, "random"),  # decode: one row of A per batch row, every variant several times
        (16, 7, "random"),  # prefill: 7 tokens per batch row
        (8, 7, [1, 1, 2, 1, 1, 1, 2, 1]),  # a variant of 42 rows: several tasks of A @ L
        (9, 12, [3, 3, 3, 3, 3, 3, 3, 3, 3]),  # every row one variant: contiguous, no gather
    ],
    ids=["B1", "decode_B64", "prefill_B16x7", "long_group", "one_variant"],
)
def test_batch_shapes_from_one_row_to_decode_and_prefill(view, batch, per_row, ids):
    k, n, rank, variants = 48, 200, 16, 5
    attrs, w_shape = view_cases(k, n)[view]
    if isinstance(ids, str):
        ids = np.random.default_rng(batch).integers(0, variants, batch)
    ids = np.asarray(ids, np.int64)
    a = random((batch, per_row, k), np.float32, 7)
    w = random(w_shape, np.float32, 8)
    u, v = stacked_factors(variants, k, n, rank, False, np.float32)
    check(a if per_row > 1 else a.reshape(batch, k), w, u, v, ids, **attrs)


def test_rows_of_one_variant_equal_a_node_with_that_variants_2d_factors():
    # The batched node's rows of variant 2 are what the plain low-rank node computes for them.
    k, n, rank = 40, 64, 4
    a, w = random((5, 2, k), np.float32, 10), random((k, n), np.float32, 11)
    u, v = stacked_factors(3, k, n, rank, False, np.float32)
    ids = np.array([2, 1, 2, 0, 2], np.int64)
    got = check(a, w, u, v, ids)
    plain = helper.make_node("IclMatMul", ["A", "W", "", "U", "V"], ["Y"], domain="ai.icl")
    rows = a[ids == 2]
    alone = run(plain, {"A": rows, "W": w, "U": u[2], "V": v[2]}, FLOAT, rows.shape[:2] + (n,))
    np.testing.assert_allclose(got[ids == 2], alone, rtol=1e-5, atol=1e-5)


def test_an_empty_a_splits_into_any_batch_and_ids_are_still_checked():
    # m = 0: B blocks of no rows; Y is empty. The ids are checked all the same.
    k, n = 8, 6
    w = random((k, n), np.float32, 1)
    u, v = stacked_factors(2, k, n, 2, False, np.float32)
    a = np.zeros((3, 0, k), np.float32)
    ids = np.array([1, 0, 1], np.int64)
    assert reference.icl_matmul(a, w, None, u, v, ids).shape == (3, 0, n)
    session = dynamic_session(variant_node())
    (got,) = session.run(None, {"A": a, "W": w, "U": u, "V": v, "ids": ids})
    assert got.shape == (3, 0, n)
    text = refusal(session, {"A": a, "W": w, "U": u, "V": v, "ids": np.array([1, 2, 0])})
    assert text.endswith("IclMatMul: variant id 2 (batch row 1) is outside [0, 2)"), text


def test_rank_zero_factors_give_the_base():
    k, n = 8, 6
    a, w = random((4, k), np.float32, 1), random((k, n), np.float32, 2)
    u, v = np.zeros((3, k, 0), np.float32), np.zeros((3, 0, n), np.float32)
    got = check(a, w, u, v, np.array([2, 0, 1, 2], np.int64))
    np.testing.assert_allclose(got, a @ w, rtol=1e-5, atol=1e-5)


# --- refusals: one line each, and the session answers the next call ----------------------------


def dynamic_session(node) -> ort.InferenceSession:
    """A CPU session over `node` whose inputs have any shape."""
    types = {
        "A": FLOAT,
        "W": FLOAT,
        "bias": FLOAT,
        "U": FLOAT,
        "V": FLOAT,
        "ids": TensorProto.INT64,
    }
    graph = helper.make_graph(
        [node],
        "variants",
        [helper.make_tensor_value_info(name, types[name], None) for name in node.input if name],
        [helper.make_tensor_value_info("Y", FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION)
    return icl_onnx.create_session(model.SerializeToString(), providers=["CPUExecutionProvider"])


def refusal(session, feeds) -> str:
    with pytest.raises(Exception) as info:  # noqa: PT011 - ORT's own exception classes
        session.run(None, feeds)
    return str(info.value)


K, N, RANK, NV = 37, 45, 3, 4
A = random((6, K), np.float32, 1)
W = random((K, N), np.float32, 2)
U, V = stacked_factors(NV, K, N, RANK, False, np.float32)
IDS = np.array([1, 3, 0], np.int64)
GOOD = {"A": A, "W": W, "U": U, "V": V, "ids": IDS}

REFUSALS = {
    "id-past-the-stack": (
        {"ids": np.array([1, 4, 0])},
        "variant id 4 (batch row 1) is outside [0, 4)",
    ),
    "id-negative": ({"ids": np.array([-1, 0, 0])}, "variant id -1 (batch row 0) is outside [0, 4)"),
    "id-int64-max": (
        {"ids": np.array([0, 0, BIG])},
        f"variant id {BIG} (batch row 2) is outside [0, 4)",
    ),
    "id-int64-min": (
        {"ids": np.array([0, -(2**63), 0])},
        f"variant id {-(2**63)} (batch row 1) is outside [0, 4)",
    ),
    "rows-not-divisible": (
        {"ids": np.array([0, 1, 2, 3])},
        "6 rows of A do not split into 4 batch rows (variant_ids [4])",
    ),
    "no-ids": ({"ids": np.zeros(0, np.int64)}, "variant_ids must hold at least one id, got [0]"),
    "ids-2d": ({"ids": IDS.reshape(3, 1)}, "variant_ids must be 1-D [B], got [3, 1]"),
    "2d-factors-with-ids": (
        {"U": U[1], "V": V[1]},
        "variant_ids needs U and V stacked per variant (3-D), got U [37, 3] and V [3, 45]",
    ),
    "stack-sizes-differ": ({"V": V[:3]}, "U stacks 4 variants but V stacks 3"),
    "factor-does-not-fit": (
        {"V": V[:, :, :44]},
        "per variant, U [37, 3] and V [3, 44] do not make a delta of view(W) [37, 45]",
    ),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_bad_ids_or_factors_are_refused_in_one_line_and_the_session_goes_on(name):
    change, message = REFUSALS[name]
    session = dynamic_session(variant_node())
    text = refusal(session, GOOD | change)
    assert text.endswith(f"IclMatMul: {message}") and "\n" not in text, text
    (y,) = session.run(None, GOOD)
    assert_close(y, reference.icl_matmul(A, W, None, U, V, IDS), FLOAT)


def test_3d_factors_without_ids_are_refused():
    session = dynamic_session(helper.make_node("IclMatMul", ["A", "W", "", "U", "V"], ["Y"],
                                               domain="ai.icl"))  # fmt: skip
    text = refusal(session, {"A": A, "W": W, "U": U, "V": V})
    message = (
        "U [4, 37, 3] and V [4, 3, 45] are stacked per variant (3-D) but the node has no "
        "variant_ids; give variant_ids [B] or 2-D factors"
    )
    assert text.endswith(f"IclMatMul: {message}") and "\n" not in text, text
    (y,) = session.run(None, {"A": A, "W": W, "U": U[2], "V": V[2]})
    assert_close(y, reference.icl_matmul(A, W, None, U[2], V[2]), FLOAT)


def test_ids_without_factors_are_refused_on_every_call():
    node = helper.make_node("IclMatMul", ["A", "W", "", "", "", "ids"], ["Y"], domain="ai.icl")
    session = dynamic_session(node)
    message = "IclMatMul: variant_ids needs U and V stacked per variant (3-D), got neither"
    for _ in range(2):
        text = refusal(session, {"A": A, "W": W, "ids": IDS})
        assert text.endswith(message) and "\n" not in text, text


def test_ids_of_another_type_fail_session_creation():
    node = variant_node()
    types = {"A": FLOAT, "W": FLOAT, "U": FLOAT, "V": FLOAT, "ids": TensorProto.INT32}
    graph = helper.make_graph(
        [node],
        "variants",
        [helper.make_tensor_value_info(name, types[name], None) for name in node.input if name],
        [helper.make_tensor_value_info("Y", FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION)
    with pytest.raises(Exception) as info:  # noqa: PT011 - ORT's own exception classes
        icl_onnx.create_session(model.SerializeToString(), providers=["CPUExecutionProvider"])
    text = str(info.value)
    assert text.endswith(
        "Type Error: Type 'tensor(int32)' of input parameter (ids) of operator (IclMatMul) in "
        "node () is invalid."
    ), text


# --- CUDA: the same node in an ORT CUDA session (skipped without a GPU) ---------------------------


@pytest.mark.gpu
@pytest.mark.skipif(ort_cuda_missing() is not None, reason=str(ort_cuda_missing()))
@pytest.mark.parametrize("a_type", [FLOAT, FLOAT16])
@pytest.mark.parametrize("delta_transpose", [0, 1])
def test_cuda_kernel_gives_each_batch_row_its_variant(a_type, delta_transpose):
    dtype = DTYPES[a_type]
    k, n, rank, batch, per_row = 37, 45, 3, 6, 2
    a = random((batch, per_row, k), dtype, 1)
    w = random((n, k), dtype, 2)
    u, v = stacked_factors(4, k, n, rank, delta_transpose, dtype)
    bias = random((n,), dtype, 3)
    ids = np.array([2, 2, 0, 3, 2, 1], np.int64)  # runs of one variant and scattered rows
    attrs = {"transpose": 1, "delta_transpose": delta_transpose}
    feeds = {"A": a, "W": w, "bias": bias, "U": u, "V": v, "ids": ids}
    graph = helper.make_graph(
        [variant_node(True, **attrs)],
        "variants",
        [
            helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
            for name, x in feeds.items()
        ],
        [helper.make_tensor_value_info("Y", a_type, [batch, per_row, n])],
    )
    options = icl_onnx.session_options()
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    session = ort.InferenceSession(
        helper.make_model(graph, opset_imports=OPSETS, ir_version=IR_VERSION).SerializeToString(),
        sess_options=options,
        providers=[CUDA_FP32],
    )
    (y,) = session.run(None, feeds)
    assert_close(y, reference.icl_matmul(a, w, bias, u, v, ids, **attrs), a_type)
