"""Exact verification of candidate relations on the values, block by block.

Comparisons are on bit patterns, so NaNs and signed zeros must match exactly too.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "is_exact_copy",
    "is_transposed_copy",
    "is_slice",
    "scale_factor",
    "is_cast_copy",
]

_BLOCK_BYTES = 16 << 20
_UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _bits(a: np.ndarray) -> np.ndarray:
    uint = _UINT_OF_SIZE.get(a.dtype.itemsize)
    return a.view(uint) if uint is not None else a


def is_exact_copy(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` have the same dtype, shape and bytes."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    fa, fb = _bits(a.reshape(-1)), _bits(b.reshape(-1))
    step = max(1, _BLOCK_BYTES // max(1, a.dtype.itemsize))
    return all(np.array_equal(fa[i : i + step], fb[i : i + step]) for i in range(0, fa.size, step))


def is_transposed_copy(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``b == a.T`` bit for bit (both 2-D)."""
    if a.dtype != b.dtype or a.ndim != 2 or b.shape != a.shape[::-1]:
        return False
    ba, bb = _bits(a), _bits(b)
    rows = max(1, _BLOCK_BYTES // max(1, a.shape[1] * a.dtype.itemsize))
    return all(
        np.array_equal(ba[i : i + rows, :], bb[:, i : i + rows].T)
        for i in range(0, a.shape[0], rows)
    )


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two equally shaped arrays of one dtype match bit for bit, block by block."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    rows = max(1, _BLOCK_BYTES // max(1, int(np.prod(a.shape[1:])) * a.dtype.itemsize))
    return all(
        np.array_equal(_bits(np.ascontiguousarray(a[i : i + rows])), _bits(b[i : i + rows]))
        for i in range(0, a.shape[0], rows)
    )


def is_slice(part: np.ndarray, whole: np.ndarray, axis: int, start: int, transpose: bool) -> bool:
    """True when ``part == transpose?(whole[start:start+n] along axis)`` bit for bit (2-D)."""
    if part.ndim != 2 or whole.ndim != 2 or part.dtype != whole.dtype:
        return False
    view_shape = part.shape[::-1] if transpose else part.shape
    size = view_shape[axis]
    if view_shape[1 - axis] != whole.shape[1 - axis] or start < 0:
        return False
    if start + size > whole.shape[axis] or size >= whole.shape[axis]:
        return False
    cut = whole[start : start + size, :] if axis == 0 else whole[:, start : start + size]
    return _same_bits(cut.T if transpose else cut, part)


def _near_float32(value: float, steps: int = 2) -> list[np.float32]:
    """``value`` rounded to float32 and its neighbours, ``steps`` units in the last place."""
    out = [np.float32(value)]
    up = down = out[0]
    for _ in range(steps):
        up = np.nextafter(up, np.float32(np.inf))
        down = np.nextafter(down, np.float32(-np.inf))
        out += [up, down]
    return out


def scale_factor(a: np.ndarray, b: np.ndarray, transpose: bool) -> float | None:
    """Returns ``c`` (a float32 value, not 1) with ``b == c * transpose?(a)`` exactly, or None.

    ``c`` is estimated from the largest element of ``a``, then confirmed on every element:
    the kernels compute ``scale * w`` in float32, so only an exact float32 match is accepted.
    """
    if a.dtype != np.float32 or b.dtype != np.float32 or a.ndim != b.ndim:
        return None
    src = a.T if transpose else a
    if src.shape != b.shape or not np.isfinite(a).all():
        return None
    k = int(np.argmax(np.abs(a)))
    pivot = float(a.reshape(-1)[k])
    if pivot == 0.0:
        return None
    target = float((b.T if transpose else b).reshape(-1)[k])
    for c in _near_float32(target / pivot):
        if c == 1.0 or not np.isfinite(c) or c == 0.0:
            continue
        if _same_bits(src * c, b):
            return float(c)
    return None


def is_cast_copy(wide: np.ndarray, narrow: np.ndarray, transpose: bool) -> bool:
    """True when ``narrow == transpose?(wide).astype(narrow.dtype)`` bit for bit."""
    if wide.dtype != np.float32 or narrow.dtype.itemsize != 2 or narrow.dtype.kind not in "fV":
        return False
    src = wide.T if transpose else wide
    if src.shape != narrow.shape:
        return False
    return _same_bits(src.astype(narrow.dtype), narrow)
