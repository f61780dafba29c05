"""Streaming fingerprints of whole tensors, each computed in one pass over the bytes.

* ``exact_digest``: a 128-bit xxh3 digest of the raw bytes. Equal digests (with equal dtype and
  shape) mean "probably an exact copy".
* ``multiset_key``: a hash of the multiset of element bit patterns (a sum of mixed per-element
  hashes, so element order does not matter). It survives any permutation of the elements, a
  transpose in particular; the analysis uses it only to split crowded buckets of sampled keys.

Keys only nominate candidates: every candidate is verified on the values before a rewrite.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import xxhash

__all__ = ["exact_digest", "multiset_key", "chunks", "mix", "UINT_OF_SIZE"]

_CHUNK_BYTES = 16 << 20
_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)
#: The unsigned type whose values are the bit patterns of a dtype of that many bytes.
UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def chunks(array: np.ndarray) -> Iterator[np.ndarray]:
    """Yields the elements of a contiguous ``array`` (a memory map too) in 16 MiB flat views."""
    flat = array.reshape(-1)  # a view for contiguous arrays and memory maps
    step = max(1, _CHUNK_BYTES // max(1, flat.dtype.itemsize))
    for start in range(0, flat.size, step):
        yield flat[start : start + step]


def mix(h: np.ndarray) -> np.ndarray:
    """A splitmix64-style finaliser on ``uint64`` values (in place, returned)."""
    h *= _MIX1
    h ^= h >> np.uint64(29)
    h *= _MIX2
    h ^= h >> np.uint64(32)
    return h


def exact_digest(array: np.ndarray) -> str:
    """The xxh3-128 digest of ``array``'s bytes, read chunk by chunk."""
    digest = xxhash.xxh3_128()
    for chunk in chunks(np.ascontiguousarray(array)):
        digest.update(chunk.view(np.uint8).data)
    return digest.hexdigest()


def multiset_key(array: np.ndarray) -> int:
    """The sum (mod 2**64) of a mixing hash of each element's bit pattern."""
    uint = UINT_OF_SIZE[array.dtype.itemsize]
    total = np.uint64(0)
    for chunk in chunks(np.ascontiguousarray(array)):
        total += mix(chunk.view(uint).astype(np.uint64)).sum(dtype=np.uint64)
    return int(total)
