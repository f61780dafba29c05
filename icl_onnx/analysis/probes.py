"""Sampled keys: a tensor's elements at positions fixed by its shape, read in O(1) per tensor.

Every relation the analysis looks for maps each element of one tensor to one element of the
other at a position known from the shapes alone, so sampling both at matching positions and
comparing the samples rejects nearly every non-candidate without reading the tensors:

* ``own``: the tensor ``T`` at positions drawn from a generator seeded by its shape.
* ``flip`` (2-D only): ``T^T`` at the positions ``own`` uses for the shape of ``T^T``, so
  ``B == A^T`` implies ``B.own == A.flip``.
* ``vector_signatures``: for row or column slices, one hash per row (or column) of a few
  elements at positions seeded by the vector's length; a row of a slice hashes like the same
  row of the whole tensor.

Samples are bit patterns (``uint64``); values for scale and cast checks are read separately.
Keys only nominate candidates: ``verify.py`` confirms every candidate on all the values.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from icl_onnx.analysis.fingerprint import UINT_OF_SIZE, mix

__all__ = ["Probes", "probe", "positions", "vector_signatures", "SAMPLES"]

#: Elements sampled per tensor.
SAMPLES = 32
#: Elements sampled per row or column for slice signatures.
VECTOR_SAMPLES = 4


@functools.lru_cache(maxsize=4096)
def positions(shape: tuple[int, ...], count: int = SAMPLES) -> tuple[np.ndarray, ...]:
    """Returns ``count`` index arrays (one per axis) seeded by ``shape``; always the same.

    The first and last elements are always sampled; the rest are drawn uniformly.
    """
    rng = np.random.default_rng([int(d) for d in shape] or [0])
    index = []
    for dim in shape:
        drawn = rng.integers(0, dim, size=max(0, count - 2), dtype=np.int64)
        index.append(np.concatenate([[0], drawn, [dim - 1]]))
    for array in index:
        array.setflags(write=False)
    return tuple(index)


def bits(values: np.ndarray) -> np.ndarray:
    """The bit patterns of ``values`` widened to ``uint64`` (for keys and exact comparisons)."""
    uint = UINT_OF_SIZE[values.dtype.itemsize]
    return np.ascontiguousarray(values).view(uint).astype(np.uint64)


@dataclasses.dataclass(frozen=True)
class Probes:
    """Samples of one tensor: at its own positions, and (2-D) of its transpose."""

    own: np.ndarray  # the tensor's dtype
    flip: np.ndarray | None  # T^T at positions(T^T.shape); None unless 2-D

    def key(self, transposed: bool = False) -> bytes:
        """Bytes of the sampled bit patterns (``flip`` when ``transposed``), for dict keys."""
        values = self.flip if transposed else self.own
        assert values is not None
        return bits(values).tobytes()


def probe(array: np.ndarray) -> Probes:
    """Samples ``array`` (a memory map is fine: only the sampled pages are read)."""
    if array.size == 0:
        return Probes(array.reshape(-1)[:0], None)
    own = array[positions(tuple(array.shape))]
    flip = None
    if array.ndim == 2:
        rows, cols = positions((array.shape[1], array.shape[0]))
        flip = array[cols, rows]  # (T^T)[r, c] == T[c, r]
    return Probes(np.asarray(own), None if flip is None else np.asarray(flip))


def vector_signatures(array: np.ndarray, axis: int) -> np.ndarray:
    """One ``uint64`` hash per row (``axis=0``) or column (``axis=1``) of a 2-D array.

    The hash mixes the vector's elements at positions seeded by the vector's length, so equal
    vectors of equal length hash alike wherever they sit. Reads ``VECTOR_SAMPLES`` elements
    per vector.
    """
    length = array.shape[1 - axis]
    (where,) = positions((length,), VECTOR_SAMPLES)
    sampled = array[:, where] if axis == 0 else array[where, :].T  # (vectors, samples)
    h = np.zeros(sampled.shape[0], dtype=np.uint64)
    for k in range(sampled.shape[1]):
        h ^= bits(sampled[:, k]) + np.uint64(k)
        h = mix(h)
    return h
