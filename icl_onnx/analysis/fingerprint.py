"""Streaming fingerprints of whole tensors, each computed in one pass over the bytes.

* ``exact_digest``: a 128-bit xxh3 digest of the raw bytes. Equal digests (with equal dtype and
  shape) mean "probably an exact copy".
* ``multiset_key``: a hash of the multiset of element bit patterns (a sum of mixed per-element
  hashes, so element order does not matter). It survives any permutation of the elements, a
  transpose in particular; the analysis uses it only to split crowded buckets of sampled keys.

Keys only nominate candidates: every candidate is verified on the values before a rewrite.
"""

from __future__ import annotations

import numpy as np
import xxhash

__all__ = ["exact_digest", "multiset_key"]

_CHUNK_BYTES = 16 << 20
_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)
_UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _chunks(array: np.ndarray):
    flat = array.reshape(-1)  # a view for contiguous arrays and memory maps
    step = max(1, _CHUNK_BYTES // max(1, flat.dtype.itemsize))
    for start in range(0, flat.size, step):
        yield flat[start : start + step]


def exact_digest(array: np.ndarray) -> str:
    """The xxh3-128 digest of ``array``'s bytes, read chunk by chunk."""
    digest = xxhash.xxh3_128()
    for chunk in _chunks(np.ascontiguousarray(array)):
        digest.update(chunk.view(np.uint8).data)
    return digest.hexdigest()


def multiset_key(array: np.ndarray) -> int:
    """The sum (mod 2**64) of a mixing hash of each element's bit pattern."""
    uint = _UINT_OF_SIZE[array.dtype.itemsize]
    total = np.uint64(0)
    for chunk in _chunks(np.ascontiguousarray(array)):
        h = chunk.view(uint).astype(np.uint64)
        h *= _MIX1
        h ^= h >> np.uint64(29)
        h *= _MIX2
        h ^= h >> np.uint64(32)
        total += h.sum(dtype=np.uint64)
    return int(total)
