"""Fingerprints that survive slicing and scaling, so view candidates are found without pairs.

* ``vector_hashes``: one 64-bit hash per row (or per column) of a 2-D tensor: the sum of a
  mixing hash of each element's bits salted with its position in the vector. A row of a slice
  hashes like the same row of the whole tensor, so one look-up per tensor finds where a slice
  may start; a column hashes like a row holding the same values, so transposed slices are found
  through the same index.
* ``sign_keys``: a normalised fingerprint for scaled copies. ``fl(c * a)`` keeps every zero and
  every sign (flipped for ``c < 0``), so the key hashes the positions of zeros, negatives and
  positives (order-free sums, as a set of positions) and sorts the negative/positive pair. The
  positions are also hashed in the transposed layout, so ``B == c * A^T`` shares a key too.

Keys only nominate candidates: ``verify.py`` confirms every candidate on the values.
"""

from __future__ import annotations

import numpy as np

__all__ = ["vector_hashes", "sign_keys"]

_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)
_UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_BLOCK_ELEMENTS = 1 << 20


def _mix(h: np.ndarray) -> np.ndarray:
    """A splitmix64-style finaliser on uint64 values (in place, returned)."""
    h *= _MIX1
    h ^= h >> np.uint64(29)
    h *= _MIX2
    h ^= h >> np.uint64(32)
    return h


def _salts(n: int) -> np.ndarray:
    return _mix(np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0xD6E8FEB86659FD93))


def _bits(block: np.ndarray) -> np.ndarray:
    return block.view(_UINT_OF_SIZE[block.dtype.itemsize]).astype(np.uint64)


def vector_hashes(array: np.ndarray, axis: int) -> np.ndarray:
    """Returns one hash per row (``axis=0``) or per column (``axis=1``) of a 2-D array.

    Equal vectors of equal length get equal hashes, wherever they sit.
    """
    rows, cols = array.shape
    step = max(1, _BLOCK_ELEMENTS // max(1, cols))
    if axis == 0:
        salts = _salts(cols)[None, :]
        out = np.empty(rows, dtype=np.uint64)
        for i in range(0, rows, step):
            out[i : i + step] = _mix(_bits(array[i : i + step]) ^ salts).sum(
                axis=1, dtype=np.uint64
            )
        return out
    salts = _salts(rows)
    total = np.zeros(cols, dtype=np.uint64)
    for i in range(0, rows, step):
        block = _mix(_bits(array[i : i + step]) ^ salts[i : i + step, None])
        total += block.sum(axis=0, dtype=np.uint64)
    return total


def _position_sum(positions: np.ndarray) -> int:
    return int(_mix(positions.astype(np.uint64) + np.uint64(1)).sum(dtype=np.uint64))


def sign_keys(array: np.ndarray, dtype_name: str) -> tuple[tuple, tuple | None]:
    """Returns the scale-invariant key of ``array`` and of its transpose (None unless 2-D).

    Args:
        array: a floating-point tensor.
        dtype_name: the ONNX dtype name, part of the key.
    """
    flat_len = array.size
    two_d = array.ndim == 2
    rows, cols = array.shape if two_d else (flat_len, 1)
    sums = [[0, 0, 0], [0, 0, 0]]  # layout (plain, transposed) x (zero, neg, pos), mod 2**64
    flat = np.ascontiguousarray(array).reshape(rows, cols)
    step = max(1, _BLOCK_ELEMENTS // max(1, cols))
    for i in range(0, rows, step):
        block = flat[i : i + step]
        r, c = np.indices(block.shape, dtype=np.int64)
        r += i
        for s, mask in enumerate((block == 0, block < 0, block > 0)):
            sums[0][s] = (sums[0][s] + _position_sum(r[mask] * cols + c[mask])) % (1 << 64)
            if two_d:
                sums[1][s] = (sums[1][s] + _position_sum(c[mask] * rows + r[mask])) % (1 << 64)
    shape = tuple(int(d) for d in array.shape)

    def key(row: list[int], dims: tuple) -> tuple:
        return (dtype_name, dims, int(row[0]), tuple(sorted((int(row[1]), int(row[2])))))

    return key(sums[0], shape), key(sums[1], shape[::-1]) if two_d else None
