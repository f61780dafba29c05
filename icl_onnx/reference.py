"""Numpy reference implementations of the ICL operators: the oracle the kernels are tested against.

The semantics are those of docs/operators.md. 16-bit inputs are computed in float32 and
the result is rounded to the output type once, as the kernels do.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx

from icl_onnx.ops import VIEW_DEFAULTS

__all__ = ["view", "view_cases", "icl_matmul", "icl_gather", "numpy_dtype", "evaluator"]


def numpy_dtype(onnx_dtype: int) -> np.dtype:
    """Returns the numpy dtype of an ONNX element type (bfloat16 through ml_dtypes)."""
    if onnx_dtype == onnx.TensorProto.BFLOAT16:
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(onnx_dtype))


def view(
    w: np.ndarray,
    slice_axis: int = 0,
    slice_start: int = 0,
    slice_size: int = -1,
    transpose: int = 0,
    scale: float = 1.0,
) -> np.ndarray:
    """Returns ``scale * transpose?(slice(w))`` in float32."""
    if w.ndim != 2:
        raise ValueError(f"W must be 2-D, got shape {w.shape}")
    axis_len = w.shape[slice_axis]
    stop = axis_len if slice_size < 0 else slice_start + slice_size
    if not 0 <= slice_start <= stop <= axis_len:
        raise ValueError(f"slice [{slice_start}:{stop}] out of range for axis of {axis_len}")
    v = w[slice_start:stop, :] if slice_axis == 0 else w[:, slice_start:stop]
    v = v.astype(np.float32)
    if transpose:
        v = v.T
    return v * np.float32(scale) if scale != 1.0 else v


def view_cases(k: int, n: int) -> dict[str, tuple[dict[str, int | float], tuple[int, int]]]:
    """Returns the kernel test cases: view name -> (attributes, stored W shape with view [k, n])."""
    return {
        "plain": ({}, (k, n)),
        "transpose": ({"transpose": 1}, (n, k)),
        "row_slice": ({"slice_axis": 0, "slice_start": 3, "slice_size": k}, (k + 7, n)),
        "column_slice": ({"slice_axis": 1, "slice_start": 5, "slice_size": n}, (k, n + 9)),
        "scale": ({"scale": 0.37}, (k, n)),
        "slice_transpose_scale": (
            {"slice_axis": 1, "slice_start": 2, "slice_size": k, "transpose": 1, "scale": -1.5},
            (n, k + 6),
        ),
    }


def _view_kwargs(attrs: dict) -> dict:
    unknown = set(attrs) - set(VIEW_DEFAULTS) - {"output_dtype"}
    if unknown:
        raise TypeError(f"unknown ICL attributes: {sorted(unknown)}")
    return {k: attrs.get(k, d) for k, d in VIEW_DEFAULTS.items()}


def icl_matmul(a: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, **attrs) -> np.ndarray:
    """Returns ``a @ view(w) + bias`` with ``a``'s dtype."""
    v = view(w, **_view_kwargs(attrs))
    y = a.astype(np.float32) @ v
    if bias is not None:
        y = y + bias.astype(np.float32)
    return y.astype(a.dtype)


def icl_gather(w: np.ndarray, indices: np.ndarray, output_dtype: int = 0, **attrs) -> np.ndarray:
    """Returns ``view(w)[indices]`` in ``output_dtype`` (``w``'s dtype when 0)."""
    v = view(w, **_view_kwargs(attrs))
    n = v.shape[0]
    idx = np.asarray(indices).astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"indices out of range [-{n}, {n})")
    out_dtype = w.dtype if output_dtype == 0 else numpy_dtype(output_dtype)
    return v[np.where(idx < 0, idx + n, idx)].astype(out_dtype)


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

    return [IclMatMul, IclGather]


def evaluator(model) -> object:
    """Returns an ``onnx.reference.ReferenceEvaluator`` that also runs ICL nodes."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model, new_ops=_op_run_classes())
