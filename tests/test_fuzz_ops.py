"""Fuzzing the ICL operators' CPU kernels with crafted one-node models (issue #20).

Anyone who registers ``libicl_ops.so`` runs the kernels on whatever a model says, so every
attribute, shape, type and index is untrusted. Each case here is one IclMatMul, IclGather or
IclGatherBlockQuantized node (domain ``ai.icl``) with random inputs: mostly valid but edgy
(empty tensors, every element type, slices to the last row, special floats, extreme but
in-range indices) so the numbers are checked, plus hostile ones (indices of +-2^31, +-2^62,
+-(2^63-1), slices starting at 2^63-1, block layouts, scales, zero points and low-rank factors
that disagree with the attributes, ill-typed inputs). Each case must either

* match the numpy reference (:mod:`icl_onnx.reference`): bitwise for the gathers (the casts
  and roundings of docs/operators.md; NaN matches NaN), within the op tests' tolerance for
  IclMatMul and for gathers that add a low-rank term (a float32 dot product), or
* be refused with a clear message: an ONNX Runtime error whose own text names the operator
  (``IclMatMul: ...``, not only ORT's "while running IclMatMul node" prefix), or ORT's type
  error for an ill-typed node. A case the docs refuse (an out-of-range slice or index, a
  factor of the wrong shape or type, ...) must not return a result.

The cases run in child processes (this file run as a script), many per child, each reporting
one line per case; a child that dies is a crash of the case it was running, and the next
child carries on after it. Children inherit the environment (``ICL_ONNX_LIBRARY``,
``LD_PRELOAD``, ``ASAN_OPTIONS``), so the suite runs as is against another build or under
the sanitizers. ``ICL_FUZZ_CASES`` (default 3000) and ``ICL_FUZZ_SEED`` (default 20) pick
the cases; a case depends only on (seed, number), and a failure prints the case as a model
description to rebuild it (``python tests/test_fuzz_ops.py --show SEED NUMBER`` prints one).
"""

from __future__ import annotations

import dataclasses
import os
import re
import selectors
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from builders import IR_VERSION
from onnx import TensorProto, helper

from icl_onnx import reference

FLOAT, FLOAT16, BFLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16
INT32, INT64, UINT8, DOUBLE = TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8, 11
FLOATS = (FLOAT, FLOAT16, BFLOAT16)
NP_TYPE = {
    FLOAT: np.dtype(np.float32),
    FLOAT16: np.dtype(np.float16),
    BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    INT32: np.dtype(np.int32),
    INT64: np.dtype(np.int64),
    UINT8: np.dtype(np.uint8),
    DOUBLE: np.dtype(np.float64),
}
TYPE_NAME = {t: TensorProto.DataType.Name(t) for t in NP_TYPE}
# The op tests' tolerances (tests/test_ops_cpu.py): float32 accumulation, one rounding to Y.
TOLERANCE = {FLOAT: (1e-5, 1e-4), FLOAT16: (2e-3, 2e-3), BFLOAT16: (1.6e-2, 1.6e-2)}
OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("ai.icl", 1)]

CASES = int(os.environ.get("ICL_FUZZ_CASES", "3000"))
SEED = int(os.environ.get("ICL_FUZZ_SEED", "20"))
#: Seconds a child may stay silent before its current case counts as hung.
CASE_TIMEOUT_S = 120.0
#: After this many crashes the rest of the cases are reported as not run.
MAX_CRASHES = 100

I63 = 2**63 - 1
#: Integers that overflow a careless int32 or int64 computation.
EXTREMES = (2**31, -(2**31), 2**31 - 1, 2**62, -(2**62), I63, -I63, -(2**63), 2**32 + 1)
#: float32 values whose casts exercise rounding: overflow to inf in 16 bits, subnormals,
#: ties, signed zero, NaN.
SPECIAL_FLOATS = np.array(
    [np.inf, -np.inf, np.nan, -0.0, 65504.0, 65520.0, 1e-8, 6e-5, 3.4e38, 1.0009765625,
     1.00390625, -2.5e-45, 1e30],
    dtype=np.float32,
)  # fmt: skip


@dataclasses.dataclass
class Input:
    """One node input: its name ("" skips an optional input), value and declared ONNX type."""

    name: str
    value: np.ndarray | None = None
    onnx_type: int = 0


@dataclasses.dataclass
class Case:
    """One crafted one-node model and its feeds.

    Attributes:
        seed: the seed it was made under.
        number: the case's number under the seed.
        op: the ICL operator.
        attrs: the node's attributes.
        inputs: the node's inputs in order (feeds of the graph).
        y_type: the element type the graph declares for Y.
        problem: why the docs refuse the case (checked beyond the reference, which would
            broadcast a short bias or factor), or None.
        exact: the result must match bitwise (gathers without a low-rank term).
    """

    seed: int
    number: int
    op: str
    attrs: dict[str, int | float]
    inputs: list[Input]
    y_type: int
    problem: str | None = None
    exact: bool = True

    def model(self) -> bytes:
        """The one-node model, serialized."""
        node = helper.make_node(
            self.op, [i.name for i in self.inputs], ["Y"], domain="ai.icl", **self.attrs
        )
        graph = helper.make_graph(
            [node],
            "fuzz",
            [
                helper.make_tensor_value_info(i.name, i.onnx_type, None)
                for i in self.inputs
                if i.name
            ],
            [helper.make_tensor_value_info("Y", self.y_type, None)],
        )
        return helper.make_model(
            graph, opset_imports=OPSETS, ir_version=IR_VERSION
        ).SerializeToString()

    def describe(self) -> str:
        """A minimal description to rebuild the case by hand."""
        lines = [f"case {self.number} (seed {self.seed}): {self.op} attrs={self.attrs} "
                 f"Y:{TYPE_NAME.get(self.y_type, self.y_type)}"]  # fmt: skip
        for i in self.inputs:
            if not i.name:
                lines.append("  (skipped optional input)")
                continue
            v = i.value
            text = f"  {i.name}: {TYPE_NAME.get(i.onnx_type, i.onnx_type)}{list(v.shape)}"
            if v.dtype.kind in "iu" and v.size <= 16:
                text += f" = {v.tolist()}"
            lines.append(text)
        lines.append(f"  docs: {self.problem or 'a result equal to the reference'}")
        return "\n".join(lines)


# --- generators -------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _floats(rng: np.random.Generator, shape, onnx_type: int, special: bool = False) -> np.ndarray:
    if 0 in tuple(shape):  # numpy's random fill cannot size huge empty shapes
        return np.zeros(shape, NP_TYPE[onnx_type])
    values = rng.standard_normal(shape).astype(np.float32)
    if special and values.size:
        mask = rng.random(shape) < 0.3
        values[mask] = rng.choice(SPECIAL_FLOATS, size=int(mask.sum()))
    with np.errstate(over="ignore"):  # 3.4e38 becomes inf in 16 bits, as intended
        return values.astype(NP_TYPE[onnx_type])


def _view(rng: np.random.Generator, rows: int, cols: int) -> tuple[dict, tuple[int, int]]:
    """View attributes and a stored W shape such that view(W) is [rows, cols]."""
    attrs: dict[str, int | float] = {}
    transpose = int(rng.integers(2))
    if transpose or rng.random() < 0.1:
        attrs["transpose"] = transpose
    stored = [cols, rows] if transpose else [rows, cols]
    if rng.random() < 0.6:
        axis = int(rng.integers(2))
        start, extra = int(rng.integers(0, 4)), int(rng.integers(0, 4))
        size = stored[axis]
        stored[axis] = start + size + extra
        attrs["slice_axis"] = axis
        if start or rng.random() < 0.5:
            attrs["slice_start"] = start
        attrs["slice_size"] = -1 if extra == 0 and rng.random() < 0.5 else size
    if rng.random() < 0.5:
        attrs["scale"] = float(_pick(rng, [0.37, -1.5, 3.0, 0.0, 1e-3, 1.0, 65504.0, -0.25]))
    return attrs, (stored[0], stored[1])


def _empty_view(
    rng: np.random.Generator, rows: int, cols: int
) -> tuple[dict, tuple[int, int], tuple[int, int]]:
    """A view of a W with a zero dimension (no slice across it, which would give it bytes).

    Returns the attributes, W's shape and the view's shape ([rows, cols], or one long
    dimension cut to its last element).
    """
    transpose = int(rng.integers(2))
    stored = [cols, rows] if transpose else [rows, cols]
    attrs: dict[str, int | float] = {"transpose": transpose}
    sliced = list(stored)
    if rng.random() < 0.5:  # the last element of the long axis
        axis = 0 if stored[0] else 1
        attrs |= {"slice_axis": axis, "slice_start": stored[axis] - 1, "slice_size": 1}
        sliced[axis] = 1
    view = (sliced[1], sliced[0]) if transpose else (sliced[0], sliced[1])
    return attrs, (stored[0], stored[1]), view


def _hostile_view(rng: np.random.Generator, attrs: dict, w_shape: tuple[int, int]) -> str:
    """Mutates view attributes to values the docs refuse; returns why.

    The out-of-range slices keep the view's extent where they can (the slice starts past W but
    is as long as before, or start + size wraps around in int64), so everything else in the
    case still fits the view a careless kernel would compute, and only the slice check stands
    between the kernel and memory outside W.
    """
    kind = int(_pick(rng, [0, 0, 1, 1, 1, 2, 3, 4, 5]))  # mostly slices past the end
    axis = int(attrs.get("slice_axis", 0))
    axis_len = w_shape[axis]
    start = int(attrs.get("slice_start", 0))
    extent = int(attrs.get("slice_size", -1))
    extent = axis_len - start if extent < 0 else extent
    attrs["slice_axis"] = axis
    if kind == 0:  # starts past the end, as long as before
        attrs["slice_start"] = int(_pick(rng, [e for e in EXTREMES if e > 0] + [axis_len + 1]))
        attrs["slice_size"] = int(_pick(rng, [extent, extent, -1, I63]))
        return "the slice lies outside W"
    if kind == 1:  # start + size wraps around, or ends one past W
        attrs["slice_start"], attrs["slice_size"] = _pick(
            rng, [(I63, I63), (2**62, 2**62), (I63, 1), (I63 - 1, 2), (2**62 + start, 2**62),
                  (start, axis_len - start + 1), (start + 1, I63 - start), (start, I63)]
        )  # fmt: skip
        return "the slice lies outside W"
    if kind == 2:
        attrs["slice_start"] = int(_pick(rng, [e for e in EXTREMES if e < 0] + [-1]))
        return "slice_start < 0"
    if kind == 3:
        attrs["slice_size"] = int(_pick(rng, [e for e in EXTREMES if e < 0] + [-2]))
        return "slice_size < -1"
    if kind == 4:
        attrs["slice_axis"] = int(_pick(rng, [2, -1, I63, -(2**63)]))
        return "slice_axis other than 0 and 1"
    attrs[_pick(rng, ["transpose", "delta_transpose"])] = int(_pick(rng, [2, -1, I63]))
    return "transpose or delta_transpose other than 0 and 1"


def _factors(
    rng: np.random.Generator, attrs: dict, p: int, q: int, w_type: int, hostile: bool
) -> tuple[list[Input], str | None]:
    """Low-rank factors U, V for a view [p, q] (sometimes wrong when ``hostile``)."""
    rank = int(_pick(rng, [1, 2, 3, 5]))
    transposed = int(rng.integers(2))
    if transposed or rng.random() < 0.2:
        attrs["delta_transpose"] = transposed
    u_shape, v_shape = ((q, rank), (rank, p)) if transposed else ((p, rank), (rank, q))
    u_type = v_type = w_type
    problem = None
    if hostile:
        kind = int(rng.integers(5))
        if kind == 0:
            u_shape = (u_shape[0] + 1, rank)
            problem = "U does not fit view(W)"
        elif kind == 1:
            v_shape = (rank, v_shape[1] + int(_pick(rng, [1, -1])) if v_shape[1] else 1)
            problem = "V does not fit view(W)"
        elif kind == 2:
            v_shape = (rank + 1, v_shape[1])
            problem = "U and V disagree on the rank"
        elif kind == 3:
            u_type = _pick(rng, [t for t in FLOATS if t != w_type])
            problem = "U has another element type than W"
        else:
            v_shape = (1, rank, v_shape[1])
            problem = "V is not 2-D"
    u = Input("U", _floats(rng, u_shape, u_type), u_type)
    v = Input("V", _floats(rng, v_shape, v_type), v_type)
    if hostile and rng.random() < 0.2:
        return [u], "U without V"
    return [u, v], problem


def _indices(
    rng: np.random.Generator, rows: int, hostile: bool
) -> tuple[np.ndarray, int, str | None]:
    """Indices into ``rows`` rows (int32 or int64, any rank); some out of range when hostile."""
    index_type = _pick(rng, [INT32, INT64])
    shape = tuple(int(d) for d in rng.integers(0, 4, size=int(rng.integers(0, 4))))
    if rows == 0 and not hostile:
        shape = (0,) if rng.random() < 0.5 else (2, 0)
    count = int(np.prod(shape))
    values = rng.integers(-rows, rows, size=count) if rows else np.zeros(count, np.int64)
    if count and rows:
        edges = [0, rows - 1, -1, -rows]
        mask = rng.random(count) < 0.4
        values[mask] = rng.choice(edges, size=int(mask.sum()))
    problem = None
    if hostile:
        if rows >= 2**31:  # int32 cannot be out of range
            index_type = INT64
        info = np.iinfo(NP_TYPE[index_type])
        bad = [rows, -rows - 1, *EXTREMES]
        bad = [e for e in bad if info.min <= e <= info.max and not -rows <= e < rows]
        count = max(count, 1)
        shape = shape if int(np.prod(shape)) == count else (count,)
        values = np.resize(values, count) if values.size else np.zeros(count, np.int64)
        values[int(rng.integers(count))] = int(_pick(rng, bad))
        problem = "an index outside [-rows, rows)"
    return values.reshape(shape).astype(NP_TYPE[index_type]), index_type, problem


def matmul_case(rng: np.random.Generator, seed: int, number: int, hostile: bool) -> Case:
    a_type, w_type = _pick(rng, FLOATS), _pick(rng, FLOATS)
    k, n = int(_pick(rng, [0, 1, 2, 3, 5, 8, 17, 33])), int(_pick(rng, [0, 1, 2, 5, 9, 16, 31]))
    attrs, w_shape = _view(rng, k, n)
    lead = tuple(int(d) for d in rng.integers(0, 4, size=int(rng.integers(0, 3))))
    if rng.random() < 0.05:  # 2^31 or more along K or N, and nothing to read or write
        huge = int(_pick(rng, [2**31, 2**32 + 1, 2**40]))
        k, n = (huge, 0) if rng.random() < 0.5 else (0, huge)
        attrs, w_shape, (k, n) = _empty_view(rng, k, n)
        lead = (*lead, 0)
    a_shape = (*lead, k)
    huge = max(k, n) > 1 << 20  # no bias or factors: they would have bytes
    bias_shape, bias_type = ((n,), a_type) if rng.random() < 0.4 and not huge else (None, a_type)
    factors: list[Input] = []
    problem = None
    kind = int(rng.integers(6)) if hostile else -1
    if huge and kind in (2, 3, 5):
        kind = 0
    if kind == 0:
        problem = _hostile_view(rng, attrs, w_shape)
    elif kind == 1:
        a_shape = (*lead, k + int(_pick(rng, [1, -1])) if k else 1)
        problem = "A's last dimension is not view(W)'s rows"
    elif kind == 2:
        bias_shape = _pick(rng, [(n + 1,), (1,) if n != 1 else (2,), (1, n), ()])
        problem = "bias is not [N]"
    elif kind == 3:
        bias_shape = (n,)
        bias_type = _pick(rng, [t for t in FLOATS if t != a_type])
        problem = "bias has another element type than A"
    elif kind == 4:
        a_type, problem = _pick(rng, [INT32, DOUBLE, INT64]), "A is not a float tensor"
    if not huge and (kind == 5 or (not hostile and rng.random() < 0.3)):
        factors, problem = _factors(rng, attrs, k, n, w_type, hostile)
    inputs = [
        Input("A", _floats(rng, a_shape, a_type) if a_type in FLOATS else
              rng.integers(-3, 3, a_shape).astype(NP_TYPE[a_type]), a_type),
        Input("W", _floats(rng, w_shape, w_type), w_type),  # no inf: sums would depend on order
    ]  # fmt: skip
    if bias_shape is not None:
        inputs.append(Input("bias", _floats(rng, bias_shape, bias_type), bias_type))
    elif factors:
        inputs.append(Input(""))
    inputs += factors
    if not huge and problem is None and rng.random() < 0.5:
        inputs, problem = _variant_rows(rng, inputs, int(np.prod(lead)))
    return Case(seed, number, "IclMatMul", attrs, inputs, a_type, problem, exact=False)


def _variant_rows(
    rng: np.random.Generator, inputs: list[Input], m: int
) -> tuple[list[Input], str | None]:
    """A valid IclMatMul case's inputs with variant_ids (factors stacked per variant), or with
    one thing the docs refuse about them; returns the inputs and why they are refused, or None.
    The draws come after all of matmul_case's, so that the cases without ids stay as they were."""
    inputs = list(inputs)
    if len(inputs) == 2:
        inputs.append(Input(""))
    factors = inputs[3:]
    kind = int(_pick(rng, [0] * 12 + [1, 2, 3, 4, 5, 6, 7, 8, 9]))  # mostly valid
    if not factors:  # no term: ids alone are refused, else the case stays as it is
        if kind == 0:
            return inputs[:2] if inputs[2].name == "" else inputs, None
        ids = Input("ids", np.zeros(1, np.int64), INT64)
        return [*inputs[:3], Input(""), Input(""), ids], "variant_ids without U and V"
    u, v = factors
    variants = int(_pick(rng, [1, 2, 3, 5]))
    stacked = [u.value[None], v.value[None]]
    for f in (0, 1):  # the other variants' factors; variant 0 sometimes zero, as a base
        more = _floats(rng, (variants - 1, *stacked[f].shape[1:]), u.onnx_type)
        stacked[f] = np.concatenate([stacked[f], more])
        if rng.random() < 0.3:
            stacked[f][0] = 0
    divisors = [d for d in range(1, m + 1) if m % d == 0] or [1, 2, 3]
    batch = int(_pick(rng, divisors))
    ids = rng.integers(0, variants, batch).astype(np.int64)
    problem = None
    if kind == 1:
        ids[int(rng.integers(batch))] = int(_pick(rng, [variants, -1, *EXTREMES]))
        problem = "a variant id outside [0, NV)"
    elif kind == 2 and m > 0:
        ids = rng.integers(0, variants, m + 1).astype(np.int64)
        problem = "A's rows do not split into B batch rows"
    elif kind == 3:
        stacked[1] = stacked[1][: variants - 1] if variants > 1 else stacked[1][[0, 0]]
        problem = "U and V stack different numbers of variants"
    elif kind == 4:
        stacked = [u.value, v.value]
        problem = "variant_ids with 2-D factors"
    elif kind == 5:
        stacked[0] = stacked[0][:, :, :-1]
        problem = "U and V disagree on the rank per variant"
    elif kind == 6:
        ids = ids.reshape(batch, 1)
        problem = "variant_ids is not 1-D"
    elif kind == 7:
        ids = ids[:0]
        problem = "variant_ids is empty"
    elif kind == 8:
        ids = ids.astype(np.int32)
        problem = "variant_ids is not int64"
    elif kind == 9:
        ids = None
        problem = "3-D factors without variant_ids"
    inputs[3:] = [Input("U", stacked[0], u.onnx_type), Input("V", stacked[1], v.onnx_type)]
    if ids is not None:
        inputs.append(Input("ids", ids, INT32 if ids.dtype == np.int32 else INT64))
    return inputs, problem


def gather_case(rng: np.random.Generator, seed: int, number: int, hostile: bool) -> Case:
    w_type = _pick(rng, FLOATS)
    output_dtype = int(_pick(rng, [0, *FLOATS]))
    rows, cols = int(_pick(rng, [0, 1, 2, 3, 7, 16])), int(_pick(rng, [0, 1, 3, 8, 19]))
    if rng.random() < 0.05:  # a table of 2^31 or more rows and no columns: no bytes at all
        rows, cols = int(_pick(rng, [2**31, 2**32 + 1, 2**40])), 0
        attrs, w_shape, (rows, cols) = _empty_view(rng, rows, cols)
    else:
        attrs, w_shape = _view(rng, rows, cols)
    if output_dtype or rng.random() < 0.2:
        attrs["output_dtype"] = output_dtype
    y_type = output_dtype or w_type
    factors: list[Input] = []
    problem = None
    kind = int(_pick(rng, [0, 1, 1, 2, 3, 4])) if hostile else -1
    indices, index_type, bad_index = _indices(rng, rows, kind == 0)
    if kind == 0:
        problem = bad_index
    elif kind == 1:
        problem = _hostile_view(rng, attrs, w_shape)
        if indices.size and rng.random() < 0.7:  # in range of the view a wrapped slice gives
            info = np.iinfo(indices.dtype)
            big = [e for e in EXTREMES if 0 < e <= info.max]
            indices.reshape(-1)[int(rng.integers(indices.size))] = int(_pick(rng, big))
    elif kind == 2:
        attrs["output_dtype"] = int(_pick(rng, [2, 7, 11, -1, I63, 1 << 31]))
        problem = "output_dtype other than 0, 1, 10, 16"
    elif kind == 3:
        y_type = _pick(rng, [t for t in FLOATS if t != y_type])
        problem = "Y declared with another type than output_dtype"
    if max(rows, cols) > 1 << 20:  # factors of a huge view would have bytes
        kind = min(kind, 3)
    elif kind == 4 or (not hostile and rng.random() < 0.3):
        factors, problem = _factors(rng, attrs, rows, cols, w_type, hostile)
    inputs = [
        Input("W", _floats(rng, w_shape, w_type, special=rng.random() < 0.3), w_type),
        Input("I", indices, index_type),
        *factors,
    ]
    return Case(seed, number, "IclGather", attrs, inputs, y_type, problem, exact=not factors)


def block_gather_case(rng: np.random.Generator, seed: int, number: int, hostile: bool) -> Case:
    bits, block_size = int(_pick(rng, [4, 8])), int(_pick(rng, [16, 32, 64, 128]))
    n, k = int(_pick(rng, [0, 1, 2, 5, 9])), int(rng.integers(1, 3 * block_size))
    scale_type = _pick(rng, FLOATS)
    n_blocks, blob = -(-k // block_size), block_size * bits // 8
    zp_row = -(-n_blocks * bits // 8)
    b_shape: tuple[int, ...] = (n, n_blocks, blob)
    scale_count, zp_count = n * n_blocks, n * zp_row if rng.random() < 0.5 else None
    attrs: dict[str, int | float] = {"K": k, "bits": bits, "block_size": block_size}
    problem = None
    kind = int(rng.integers(9)) if hostile else -1
    indices, index_type, bad_index = _indices(rng, n, kind == 0)
    if kind == 8:  # block_size * bits wraps to 0 in int64: a B of no bytes "fits"
        attrs["block_size"], attrs["bits"] = _pick(rng, [(2**62, 4), (2**61, 8), (2**62, 8)])
        b_shape, scale_count = (n, 1, 0), n
        zp_count = None if zp_count is None else n
        problem = "B's shape disagrees with K, bits and block_size"
    if kind == 0:
        problem = bad_index
    elif kind == 1:
        attrs["K"] = int(_pick(rng, [0, -1, k + block_size, *EXTREMES]))
        problem = "K does not fit B"
    elif kind == 2:
        attrs["bits"] = int(_pick(rng, [0, 1, 2, 3, 16, -4, 2**62, I63]))
        problem = "bits other than 4 and 8"
    elif kind == 3:
        attrs["block_size"] = int(_pick(rng, [0, 8, 24, -16, 2**62, 2**32, I63, -(2**63)]))
        problem = "block_size that does not fit B"
    elif kind == 4:
        b_shape = _pick(
            rng,
            [
                (n, n_blocks + 1, blob),
                (n, n_blocks, blob + 1),
                (n, n_blocks * blob),
                (n, n_blocks, blob, 1),
                (n, n_blocks, blob // 2),
            ],
        )
        problem = "B's shape disagrees with K, bits and block_size"
    elif kind == 5:
        wrong = int(_pick(rng, [scale_count + 1, scale_count - 1, 0, 2 * scale_count]))
        scale_count = wrong if 0 <= wrong != scale_count else scale_count + 1
        problem = "scales of the wrong length"
    elif kind == 6:
        zp_count = int(
            _pick(rng, [n * zp_row + 1, n * n_blocks * 2 + 1, 0 if n else 1, (n * zp_row) // 2])
        )
        if zp_count == n * zp_row:
            zp_count += 1
        problem = "zero_points of the wrong length"
    elif kind == 7:
        del attrs[_pick(rng, ["K", "bits", "block_size"])]
        problem = "a required attribute is missing"
    inputs = [
        Input("B", rng.integers(0, 256, b_shape, dtype=np.uint8), UINT8),
        Input("I", indices, index_type),
        Input("S", _floats(rng, (scale_count,), scale_type, special=rng.random() < 0.2).reshape(
            (n, n_blocks) if scale_count == n * n_blocks and rng.random() < 0.5 else (scale_count,)
        ), scale_type),
    ]  # fmt: skip
    if zp_count is not None:
        inputs.append(Input("Z", rng.integers(0, 256, (zp_count,), dtype=np.uint8), UINT8))
    return Case(seed, number, "IclGatherBlockQuantized", attrs, inputs, scale_type, problem)


GENERATORS: tuple[Callable[[np.random.Generator, int, int, bool], Case], ...] = (
    matmul_case,
    gather_case,
    block_gather_case,
)


def make_case(seed: int, number: int) -> Case:
    """Case ``number`` under ``seed``: one in four is hostile."""
    rng = np.random.default_rng([seed, number])
    generator = GENERATORS[number % len(GENERATORS)]
    return generator(rng, seed, number, bool(rng.random() < 0.25))


# --- the oracle -------------------------------------------------------------------------------


def _reference(case: Case) -> np.ndarray:
    values = {i.name: i.value for i in case.inputs if i.name}
    optional = [values.get(name) for name in ("U", "V")]
    if case.op == "IclMatMul":
        return reference.icl_matmul(
            values["A"], values["W"], values.get("bias"), *optional, values.get("ids"),
            **case.attrs,
        )  # fmt: skip
    if case.op == "IclGather":
        return reference.icl_gather(values["W"], values["I"], *optional, **case.attrs)
    return reference.icl_gather_block_quantized(
        values["B"], values["I"], values["S"], values.get("Z"), **case.attrs
    )


def expected(case: Case) -> tuple[np.ndarray | None, str | None]:
    """Returns (the reference's Y, None), or (None, why the case must be refused)."""
    if case.problem:
        return None, case.problem
    try:
        with np.errstate(all="ignore"):  # inf and NaN are part of the cases
            return _reference(case), None
    except (ValueError, IndexError, TypeError) as e:
        return None, f"the reference refuses it ({e})"


_ORT_PREFIX = re.compile(r"Non-zero status code returned while running \w+ node\. Name:'[^']*' ")


def clear_refusal(op: str, message: str) -> bool:
    """The error names the operator in its own text, or is ORT's type error for the node."""
    own = _ORT_PREFIX.sub("", message)
    if re.search(rf"\b{op}\b[^:\n]*: \S", own):
        return True
    type_error = "Type Error" in own or "type inferencing error" in own
    return type_error and (f"of operator ({op})" in own or f"Op ({op})" in own)


def same_bits(actual: np.ndarray, want: np.ndarray) -> bool:
    """Equal element by element, bit for bit, except that any NaN matches any NaN."""
    a32, w32 = actual.astype(np.float32), want.astype(np.float32)
    both_nan = np.isnan(a32) & np.isnan(w32)
    bits_a = actual.view(np.uint32 if actual.itemsize == 4 else np.uint16)
    bits_w = want.view(np.uint32 if want.itemsize == 4 else np.uint16)
    return bool(np.all(both_nan | (bits_a == bits_w)))


def close(actual: np.ndarray, want: np.ndarray, onnx_type: int) -> bool:
    rtol, atol = TOLERANCE[onnx_type]
    finite = np.isfinite(want.astype(np.float32))
    scale = max(1.0, float(np.abs(want.astype(np.float32)[finite]).max(initial=0.0)))
    return bool(
        np.allclose(
            actual.astype(np.float32), want.astype(np.float32), rtol=rtol, atol=atol * scale,
            equal_nan=True,
        )
    )  # fmt: skip


# --- the child: runs cases and reports one line each --------------------------------------------


def _ort_value(ort, array: np.ndarray, onnx_type: int):
    bits = array.view(np.uint16) if onnx_type == BFLOAT16 else array
    return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
        np.require(bits, requirements="C"),
        onnx_element_type=onnx_type,  # keeps 0-d arrays 0-d
    )


def run_case(case: Case, ort, options) -> str:
    """Runs one case; returns ``ok <how>`` or ``FAIL <why>`` (one line)."""
    want, problem = expected(case)
    try:
        session = ort.InferenceSession(case.model(), options, providers=["CPUExecutionProvider"])
        feeds = {i.name: _ort_value(ort, i.value, i.onnx_type) for i in case.inputs if i.name}
        if want is None:
            outputs = session.run_with_ort_values(None, feeds)
            try:
                shape = outputs[0].shape()
            except Exception as e:  # noqa: BLE001 - a dimension past int64 (ORT's binding)
                shape = f"unreadable ({e})"
            return f"FAIL returned a result of shape {shape} although {problem}"
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, value)
        got = np.full(want.shape, np.nan, dtype=want.dtype)
        binding.bind_ortvalue_output("Y", _ort_value(ort, got, case.y_type))
        session.run_with_iobinding(binding)
    except Exception as e:  # noqa: BLE001 - any ORT error is a refusal; judge its text
        text = " ".join(str(e).split())
        if not clear_refusal(case.op, text):
            return f"FAIL refused without naming {case.op}: {text[:300]}"
        if want is not None:
            return f"FAIL refused a valid case: {text[:300]}"
        return "ok refused"
    if case.exact:
        good = same_bits(got, want)
    else:
        good = close(got, want, case.y_type)
    if not good:
        diff = np.abs(got.astype(np.float32) - want.astype(np.float32))
        worst = np.unravel_index(
            int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff))), diff.shape
        )
        return (
            f"FAIL wrong values{' (bitwise)' if case.exact else ''}: at {tuple(map(int, worst))} "
            f"got {got[worst]!r}, want {want[worst]!r}"
        )
    return "ok matched"


def child(seed: int, first: int, stop: int) -> None:
    """Runs cases ``first`` to ``stop - 1``, printing ``<number> <outcome>`` after each."""
    import onnxruntime as ort

    import icl_onnx

    options = icl_onnx.session_options()
    options.intra_op_num_threads = 1  # tiny models; thread pools would cost more than the case
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    for number in range(first, stop):
        print(f"{number} start", flush=True)
        try:
            line = run_case(make_case(seed, number), ort, options)
        except Exception as e:  # noqa: BLE001 - a bug of this file, reported as the case's failure
            line = f"FAIL the harness raised {type(e).__name__}: {e}"
        print(f"{number} {line}", flush=True)


# --- the parent: children, crashes, the report --------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """What happened: case number -> ``ok ...`` / ``FAIL ...`` line, and child-level problems."""

    lines: dict[int, str] = dataclasses.field(default_factory=dict)
    crashes: int = 0
    exits: list[str] = dataclasses.field(default_factory=list)


def _run_child(seed: int, first: int, count: int, outcome: Outcome) -> tuple[int, str]:
    """Runs one child from case ``first``; returns the case it was on when it stopped and why
    it stopped ("" when it finished cleanly)."""
    with tempfile.TemporaryFile("w+") as stderr:  # a file: a chatty child cannot block on it
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(seed), str(first),
             str(count)],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=os.environ.copy(),
        )  # fmt: skip
        current, hung = first, False
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                if not selector.select(timeout=CASE_TIMEOUT_S):
                    hung = True
                    proc.kill()
                    break
                line = proc.stdout.readline()
                if not line:
                    break
                number, _, status = line.strip().partition(" ")
                if status == "start":
                    current = int(number)
                else:
                    outcome.lines[int(number)] = status
                    current = int(number) + 1
        proc.stdout.close()
        proc.wait()
        stderr.seek(0)
        tail = " ".join(stderr.read().strip().splitlines()[-3:])[-400:]
    if hung:
        return current, f"hung for {CASE_TIMEOUT_S:.0f} s"
    if proc.returncode != 0:
        return current, f"crashed the process (exit {proc.returncode}): {tail}"
    return current, ""


def run_cases(seed: int, count: int) -> Outcome:
    """Runs ``count`` cases in children; a child's death is a crash of its current case."""
    outcome = Outcome()
    first = 0
    while first < count:
        if outcome.crashes >= MAX_CRASHES:
            for number in range(first, count):
                outcome.lines[number] = f"FAIL not run: {MAX_CRASHES} crashes before it"
            break
        current, problem = _run_child(seed, first, count, outcome)
        if not problem:
            break
        if current >= count:  # every case reported, then the process failed (exit, leak check)
            outcome.exits.append(problem)
            break
        outcome.lines[current] = f"FAIL {problem}"
        outcome.crashes += 1
        first = current + 1
    return outcome


def report(seed: int, outcome: Outcome) -> list[str]:
    """The failing cases, each with its model description."""
    failures = []
    for number, line in sorted(outcome.lines.items()):
        if not line.startswith("ok"):
            failures.append(f"{make_case(seed, number).describe()}\n  -> {line}")
    return failures


@pytest.mark.usefixtures("icl_library")
def test_crafted_one_node_models_match_the_reference_or_are_refused_clearly():
    outcome = run_cases(SEED, CASES)
    assert not outcome.exits, outcome.exits
    assert len(outcome.lines) == CASES, "some cases reported nothing"
    failures = report(SEED, outcome)
    matched = sum(line == "ok matched" for line in outcome.lines.values())
    summary = (
        f"{len(failures)} of {CASES} cases failed (seed {SEED}; {matched} matched the reference, "
        f"{outcome.crashes} crashed)"
    )
    assert not failures, summary + "\n" + "\n".join(failures[:40])
    # The generators must mostly make valid cases, so that the numbers are checked.
    assert matched > CASES // 2, summary


def test_every_case_kind_is_generated():
    """The generators reach what the suite claims to cover (checked on the cases, not run)."""
    cases = [make_case(SEED, n) for n in range(3000)]
    seen = {c.op for c in cases}
    assert seen == {"IclMatMul", "IclGather", "IclGatherBlockQuantized"}
    problems = {c.problem.split(" (")[0] for c in cases if c.problem}
    for expected_problem in (
        "the slice lies outside W",
        "an index outside [-rows, rows)",
        "U has another element type than W",
        "B's shape disagrees with K, bits and block_size",
        "scales of the wrong length",
        "block_size that does not fit B",
        "zero_points of the wrong length",
        "a variant id outside [0, NV)",
        "A's rows do not split into B batch rows",
        "U and V stack different numbers of variants",
        "variant_ids without U and V",
        "3-D factors without variant_ids",
    ):
        assert expected_problem in problems
    index_values = np.concatenate(
        [i.value.reshape(-1).astype(np.int64) for c in cases for i in c.inputs if i.name == "I"]
    )
    assert {2**31, -(2**62), I63}.issubset(set(index_values.tolist()))
    types = {(c.op, i.name, i.onnx_type) for c in cases for i in c.inputs}
    for t in FLOATS:
        assert ("IclMatMul", "A", t) in types and ("IclGather", "W", t) in types
        assert ("IclGatherBlockQuantized", "S", t) in types
    assert any(i.value.size == 0 for c in cases for i in c.inputs if i.name)
    valid_ids = [c for c in cases if not c.problem and any(i.name == "ids" for i in c.inputs)]
    assert len(valid_ids) > 50  # mixed batches whose numbers are checked
    assert make_case(SEED, 7).describe() == make_case(SEED, 7).describe()  # reproducible


def test_a_crashing_child_is_reported_and_the_rest_continue(monkeypatch):
    """The harness itself: a case that kills its child is a crash, and the next case runs."""
    monkeypatch.setenv("ICL_FUZZ_CRASH_AT", "2")
    outcome = run_cases(SEED, 5)
    assert outcome.crashes == 1
    assert outcome.lines[2].startswith("FAIL crashed the process")
    assert all(outcome.lines[n].startswith("ok") for n in (0, 1, 3, 4)), outcome.lines


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        crash_at = os.environ.get("ICL_FUZZ_CRASH_AT")
        if crash_at is not None:  # the harness test: die like a segfault at that case
            import signal

            seed, first, stop = map(int, argv[1:4])
            if first <= int(crash_at) < stop:
                child(seed, first, int(crash_at))
                print(f"{crash_at} start", flush=True)
                os.kill(os.getpid(), signal.SIGSEGV)
        child(*map(int, argv[1:4]))
    elif argv[:1] == ["--show"]:
        case = make_case(int(argv[1]), int(argv[2]))
        print(case.describe())
    else:
        sys.exit(f"usage: {sys.argv[0]} --child SEED FIRST STOP | --show SEED NUMBER")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main(sys.argv[1:])
