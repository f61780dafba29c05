"""Fingerprints of tensors, computed in one streaming pass over their bytes.

Two keys per tensor:

* ``exact``: a 128-bit xxh3 digest of the raw bytes, with dtype and shape. Equal keys mean
  "probably an exact copy".
* ``multiset``: a hash of the multiset of element bit patterns (a sum of mixed per-element
  hashes, so element order does not matter), with dtype and the sorted shape. It survives any
  permutation of the elements, a transpose in particular.

Keys only nominate candidates: every candidate is verified on the values before a rewrite.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xxhash

__all__ = ["Fingerprint", "fingerprint"]

_CHUNK_ELEMENTS = 1 << 20
_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)
_UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """Keys under which a tensor is grouped with its candidate copies."""

    exact: tuple
    multiset: tuple


def _mixed_sum(bits: np.ndarray) -> int:
    """Returns the sum (mod 2**64) of a mixing hash of each element's bit pattern."""
    h = bits.astype(np.uint64)
    h *= _MIX1
    h ^= h >> np.uint64(29)
    h *= _MIX2
    h ^= h >> np.uint64(32)
    return int(h.sum(dtype=np.uint64))


def fingerprint(array: np.ndarray, dtype_name: str) -> Fingerprint:
    """Computes both keys of ``array`` reading its bytes once, chunk by chunk.

    Args:
        array: the tensor's values (may be a memory map; only one chunk is resident at a time).
        dtype_name: the ONNX dtype name, part of both keys (bfloat16 and float16 share a width).
    """
    flat = np.ascontiguousarray(array).reshape(-1)
    uint = _UINT_OF_SIZE.get(flat.dtype.itemsize)
    digest = xxhash.xxh3_128()
    total = 0
    for start in range(0, flat.size, _CHUNK_ELEMENTS):
        chunk = flat[start : start + _CHUNK_ELEMENTS]
        digest.update(chunk.view(np.uint8).data)
        if uint is not None:
            total = (total + _mixed_sum(chunk.view(uint))) % (1 << 64)
    shape = tuple(int(d) for d in array.shape)
    return Fingerprint(
        exact=(dtype_name, shape, digest.hexdigest()),
        multiset=(dtype_name, tuple(sorted(shape)), total),
    )
