"""Exact verification of candidate relations on the values, block by block.

Comparisons are on bit patterns, so NaNs and signed zeros must match exactly too.
"""

from __future__ import annotations

import numpy as np

__all__ = ["is_exact_copy", "is_transposed_copy"]

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
