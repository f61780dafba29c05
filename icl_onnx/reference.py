"""Numpy reference implementations of the ICL operators: the oracle the kernels are tested against.

The semantics are those of docs/operators.md. 16-bit inputs are computed in float32 and
the result is rounded to the output type once, as the kernels do.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_dtypes
import numpy as np
import onnx

from icl_onnx.block_quant import BlockLayout, dequantize
from icl_onnx.ops import DOMAIN, GATHER, GATHER_BLOCK_QUANTIZED, MATMUL
from icl_onnx.views import ViewAttrs

__all__ = [
    "view",
    "low_rank_delta",
    "icl_matmul",
    "icl_gather",
    "icl_gather_block_quantized",
    "numpy_dtype",
    "evaluator",
    "REFERENCES",
]


def numpy_dtype(onnx_dtype: int) -> np.dtype:
    """Returns the numpy dtype of an ONNX element type (bfloat16 through ml_dtypes)."""
    if onnx_dtype == onnx.TensorProto.BFLOAT16:
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(onnx_dtype))


def view(w: np.ndarray, **attrs: int | float) -> np.ndarray:
    """Returns ``scale * transpose?(slice(w))`` in float32 (attributes as in icl_onnx.views)."""
    v = ViewAttrs.from_attrs(attrs, allow_output_dtype=False)
    out = v.select(w).astype(np.float32)
    return out * np.float32(v.scale) if v.scale != 1.0 else out


def low_rank_delta(u: np.ndarray, v: np.ndarray, delta_transpose: int = 0) -> np.ndarray:
    """Returns the low-rank term ``U @ V`` (or ``(U @ V)^T``) in float32, added to ``view(W)``."""
    delta = u.astype(np.float32) @ v.astype(np.float32)
    return delta.T if delta_transpose else delta


def _with_delta(table: np.ndarray, u, v, delta_transpose: int) -> np.ndarray:
    if (u is None) != (v is None):
        raise ValueError("U and V must be given together")
    return table if u is None else table + low_rank_delta(u, v, delta_transpose)


def icl_matmul(
    a: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    u: np.ndarray | None = None,
    v: np.ndarray | None = None,
    variant_ids: np.ndarray | None = None,
    delta_transpose: int = 0,
    **attrs,
) -> np.ndarray:
    """Returns ``a @ (view(w) + delta) + bias`` with ``a``'s dtype (delta from ``u``, ``v``).

    With ``variant_ids`` [B], ``u`` and ``v`` stack one pair of factors per variant on a first
    axis, and batch row ``b`` (``a``'s rows taken in order, ``rows / B`` per batch row) is
    multiplied by ``view(w) + delta(u[variant_ids[b]], v[variant_ids[b]])``.
    """
    ViewAttrs.from_attrs({**attrs, "delta_transpose": delta_transpose})  # checks it
    base = view(w, **attrs)
    if variant_ids is None:
        y = a.astype(np.float32) @ _with_delta(base, u, v, delta_transpose)
    else:
        y = _per_variant_rows(a, base, u, v, variant_ids, delta_transpose)
    if bias is not None:
        y = y + bias.astype(np.float32)
    return y.astype(a.dtype)


def _per_variant_rows(a, base, u, v, variant_ids, delta_transpose: int) -> np.ndarray:
    """``a``'s rows in ``len(variant_ids)`` equal blocks, block b through variant ``ids[b]``."""
    if u is None or v is None or u.ndim != 3 or v.ndim != 3:
        raise ValueError("variant_ids needs U and V stacked per variant (3-D)")
    ids = np.asarray(variant_ids).reshape(-1)
    rows = a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1]).astype(np.float32)  # K may be 0
    if ids.size == 0 or rows.shape[0] % ids.size:
        raise ValueError(f"{rows.shape[0]} rows of A do not split into {ids.size} batch rows")
    if ((ids < 0) | (ids >= u.shape[0])).any():
        raise ValueError(f"a variant id is outside [0, {u.shape[0]})")
    per_row = rows.shape[0] // ids.size
    out = np.empty((rows.shape[0], base.shape[1]), np.float32)
    for b, k in enumerate(ids):
        block = slice(b * per_row, (b + 1) * per_row)
        out[block] = rows[block] @ (base + low_rank_delta(u[k], v[k], delta_transpose))
    return out.reshape(*a.shape[:-1], base.shape[1])


def icl_gather(
    w: np.ndarray,
    indices: np.ndarray,
    u: np.ndarray | None = None,
    v: np.ndarray | None = None,
    output_dtype: int = 0,
    delta_transpose: int = 0,
    **attrs,
) -> np.ndarray:
    """Returns ``(view(w) + delta)[indices]`` in ``output_dtype`` (``w``'s dtype when 0)."""
    ViewAttrs.from_attrs(
        {**attrs, "output_dtype": output_dtype, "delta_transpose": delta_transpose}
    )  # checks output_dtype and delta_transpose too
    table = _with_delta(view(w, **attrs), u, v, delta_transpose)
    n = table.shape[0]
    idx = np.asarray(indices).astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"indices out of range [-{n}, {n})")
    out_dtype = w.dtype if output_dtype == 0 else numpy_dtype(output_dtype)
    return table[np.where(idx < 0, idx + n, idx)].astype(out_dtype)


def icl_gather_block_quantized(
    b: np.ndarray,
    indices: np.ndarray,
    scales: np.ndarray,
    zero_points: np.ndarray | None = None,
    *,
    K: int,  # noqa: N803 (the attribute's name)
    bits: int = 4,
    block_size: int = 32,
) -> np.ndarray:
    """Returns rows ``indices`` of the MatMulNBits table ``(b, scales, zero_points)``, dequantized.

    ``Y[indices.shape..., K]`` has the scales' dtype; see ``icl_onnx.block_quant``.
    """
    if b.ndim != 3:
        raise ValueError(f"B must be 3-D [N, n_blocks, blob], got shape {b.shape}")
    layout = BlockLayout(b.shape[0], K, bits, block_size)
    if b.shape != layout.b_shape:
        raise ValueError(f"B must have shape {layout.b_shape}, got {b.shape}")
    n = layout.n
    idx = np.asarray(indices).astype(np.int64)
    bad = idx[(idx < -n) | (idx >= n)]
    if bad.size:
        raise IndexError(f"index {bad.flat[0]} is outside [-{n}, {n})")
    rows = np.where(idx < 0, idx + n, idx)
    values = dequantize(b, scales, zero_points, layout, rows=rows.reshape(-1))
    return values.reshape(*idx.shape, K)


#: The reference of each ICL operator (its spec, ``icl_onnx.opspec``, reads it from here).
REFERENCES: dict[str, Callable[..., np.ndarray]] = {
    MATMUL: icl_matmul,
    GATHER: icl_gather,
    GATHER_BLOCK_QUANTIZED: icl_gather_block_quantized,
}


def _op_run_classes() -> list[type]:
    """Builds ``onnx.reference`` kernels of the ICL ops (for ReferenceEvaluator's new_ops)."""
    from onnx.reference.op_run import OpRun

    def run(self, *inputs, **attrs):
        given = {k: x for k, x in attrs.items() if x is not None}
        return (REFERENCES[type(self).__name__](*inputs, **given),)

    return [type(name, (OpRun,), {"op_domain": DOMAIN, "_run": run}) for name in REFERENCES]


def evaluator(model) -> object:
    """Returns an ``onnx.reference.ReferenceEvaluator`` that also runs ICL nodes."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model, new_ops=_op_run_classes())
