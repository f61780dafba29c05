"""Numpy reference implementations of the ICL operators: the oracle the kernels are tested against.

The semantics are those of docs/operators.md. 16-bit inputs are computed in float32 and
the result is rounded to the output type once, as the kernels do.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx

from icl_onnx.block_quant import BlockLayout, dequantize
from icl_onnx.views import ViewAttrs

__all__ = [
    "view",
    "icl_matmul",
    "icl_gather",
    "icl_gather_block_quantized",
    "numpy_dtype",
    "evaluator",
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


def icl_matmul(a: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, **attrs) -> np.ndarray:
    """Returns ``a @ view(w) + bias`` with ``a``'s dtype."""
    v = view(w, **attrs)
    y = a.astype(np.float32) @ v
    if bias is not None:
        y = y + bias.astype(np.float32)
    return y.astype(a.dtype)


def icl_gather(w: np.ndarray, indices: np.ndarray, output_dtype: int = 0, **attrs) -> np.ndarray:
    """Returns ``view(w)[indices]`` in ``output_dtype`` (``w``'s dtype when 0)."""
    ViewAttrs.from_attrs({**attrs, "output_dtype": output_dtype})  # checks output_dtype too
    v = view(w, **attrs)
    n = v.shape[0]
    idx = np.asarray(indices).astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"indices out of range [-{n}, {n})")
    out_dtype = w.dtype if output_dtype == 0 else numpy_dtype(output_dtype)
    return v[np.where(idx < 0, idx + n, idx)].astype(out_dtype)


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


def _op_run_classes() -> list[type]:
    """Builds ``onnx.reference`` kernels of the ICL ops (for ReferenceEvaluator's new_ops)."""
    from onnx.reference.op_run import OpRun

    class IclMatMul(OpRun):
        op_domain = "ai.icl"

        def _run(self, a, w, bias=None, **attrs):
            return (icl_matmul(a, w, bias, **{k: v for k, v in attrs.items() if v is not None}),)

    class IclGather(OpRun):
        op_domain = "ai.icl"

        def _run(self, w, indices, **attrs):
            return (icl_gather(w, indices, **{k: v for k, v in attrs.items() if v is not None}),)

    class IclGatherBlockQuantized(OpRun):
        op_domain = "ai.icl"

        def _run(self, b, indices, scales, zero_points=None, **attrs):
            kwargs = {k: v for k, v in attrs.items() if v is not None}
            return (icl_gather_block_quantized(b, indices, scales, zero_points, **kwargs),)

    return [IclMatMul, IclGather, IclGatherBlockQuantized]


def evaluator(model) -> object:
    """Returns an ``onnx.reference.ReferenceEvaluator`` that also runs ICL nodes."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model, new_ops=_op_run_classes())
