"""Verification and sampled keys on tensors larger than one block or tile."""

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from icl_onnx.analysis import verify
from icl_onnx.analysis.probes import positions, probe, vector_signatures
from icl_onnx.planning import analyze

RNG = np.random.default_rng(7)
A = RNG.standard_normal((300, 520)).astype(np.float32)  # crosses 256-element tiles both ways


def _corrupt_last(array: np.ndarray) -> np.ndarray:
    out = array.copy()
    flat = out.reshape(-1)
    flat[-1] = np.nextafter(flat[-1], out.dtype.type(np.inf))  # one unit in the last place
    return out


@pytest.mark.parametrize("corrupt", [False, True])
def test_transposed_copy_is_checked_in_every_tile(corrupt):
    b = np.ascontiguousarray(A.T)
    assert verify.is_transposed_copy(A, _corrupt_last(b) if corrupt else b) is not corrupt


@pytest.mark.parametrize("corrupt", [False, True])
def test_exact_copy_is_checked_in_every_block(monkeypatch, corrupt):
    monkeypatch.setattr(verify, "_BLOCK_BYTES", 4096)  # many blocks
    b = A.copy()
    assert verify.is_exact_copy(A, _corrupt_last(b) if corrupt else b) is not corrupt


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("corrupt", [False, True])
def test_scale_factor_is_exact_in_every_tile(transpose, corrupt):
    src = A.T if transpose else A
    b = np.ascontiguousarray(src * np.float32(-0.37))
    c = verify.scale_factor(A, _corrupt_last(b) if corrupt else b, transpose)
    assert (c is None) if corrupt else c == pytest.approx(-0.37)


def test_scale_factor_rejects_non_finite_weights():
    a = A.copy()
    a[5, 5] = np.inf
    assert verify.scale_factor(a, a * np.float32(2), False) is None


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("corrupt", [False, True])
def test_cast_copy_is_checked_in_every_tile(transpose, corrupt):
    half = np.ascontiguousarray((A.T if transpose else A).astype(np.float16))
    member = _corrupt_last(half) if corrupt else half
    assert verify.is_cast_copy(A, member, transpose) is not corrupt


@pytest.mark.parametrize(("axis", "transpose"), [(0, False), (1, False), (0, True), (1, True)])
def test_slice_is_checked_in_every_tile(axis, transpose):
    cut = A[17:290] if axis == 0 else A[:, 3:511]
    part = np.ascontiguousarray(cut.T if transpose else cut)
    start = 17 if axis == 0 else 3
    assert verify.is_slice(part, A, axis, start, transpose)
    assert not verify.is_slice(_corrupt_last(part), A, axis, start, transpose)
    assert not verify.is_slice(part, A, axis, start + 1, transpose)


def test_probes_of_a_transpose_match_the_flipped_probes():
    p, q = probe(A), probe(np.ascontiguousarray(A.T))
    assert q.key() == p.key(transposed=True)
    assert q.key(transposed=True) == p.key()
    assert p.key() != p.key(transposed=True)


def test_vector_signatures_find_rows_and_columns_wherever_they_sit():
    rows, cols = vector_signatures(A, 0), vector_signatures(A, 1)
    assert np.array_equal(vector_signatures(A[40:50], 0), rows[40:50])
    assert np.array_equal(vector_signatures(A[:, 9:12], 1), cols[9:12])
    # A column of A is a row of A.T.
    assert np.array_equal(vector_signatures(np.ascontiguousarray(A.T), 0), cols)
    assert len(set(rows.tolist())) == A.shape[0]


def test_a_transposed_copy_is_found_in_a_crowded_bucket_of_equal_samples():
    # Twelve sparse (48, 64) and twelve (64, 48) tensors are zero at every sampled position, so
    # all samples are equal; the transposed copy of the last one (listed last, past the
    # verification cap either way) must still be found (by its multiset key).
    rows, cols = 48, 64
    sampled = set(zip(*(a.tolist() for a in positions((rows, cols))), strict=True))
    sampled |= {(c, r) for r, c in zip(*(a.tolist() for a in positions((cols, rows))), strict=True)}
    free = [(r, c) for r in range(rows) for c in range(cols) if (r, c) not in sampled]
    sparse, other = [], []
    for k in range(12):
        t = np.zeros((rows, cols), np.float32)
        t[free[5 * k]] = k + 1.0
        sparse.append(t)
        u = np.zeros((cols, rows), np.float32)
        u[free[5 * k + 2][::-1]] = k + 100.0
        other.append(u)
    inits = [nh.from_array(t, f"s{k}") for k, t in enumerate(sparse)]
    inits += [nh.from_array(u, f"u{k}") for k, u in enumerate(other)]
    inits.append(nh.from_array(np.ascontiguousarray(sparse[-1].T), "copyT"))
    names = [i.name for i in inits]
    nodes = [h.make_node("MatMul", ["x" if n[0] == "s" else "xt", n], [f"y_{n}"]) for n in names]
    graph = h.make_graph(
        nodes,
        "g",
        [
            h.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows]),
            h.make_tensor_value_info("xt", TensorProto.FLOAT, [1, cols]),
        ],
        [h.make_tensor_value_info(f"y_{n}", TensorProto.FLOAT, None) for n in names],
        inits,
    )
    plan = analyze(ir.from_proto(h.make_model(graph)), min_elements=16)
    assert [(g.canonical, [m.name for m in g.members]) for g in plan.groups] == [("s11", ["copyT"])]
    assert plan.groups[0].members[0].view.transpose
