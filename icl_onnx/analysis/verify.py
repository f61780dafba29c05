"""Exact verification of candidate relations on the values, block by block.

Comparisons are on bit patterns, so NaNs and signed zeros must match exactly too. Every check
walks both tensors in blocks of about 16 MiB (a transposed comparison pairs a block of rows of
one with the matching block of columns of the other), stops at the first block that differs,
and never holds a temporary larger than a block: tensors may be memory maps of many GiB.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

from icl_onnx import progress
from icl_onnx.analysis.fingerprint import UINT_OF_SIZE

__all__ = [
    "is_exact_copy",
    "is_transposed_copy",
    "is_slice",
    "scale_factor",
    "is_cast_copy",
]

_BLOCK_BYTES = 16 << 20
#: Side of the square tiles compared when one side is read transposed.
_TRANSPOSED_TILE = 256

#: An element-wise function of a block; None means the block cannot match.
Transform = Callable[[np.ndarray], "np.ndarray | None"]


def _bits(a: np.ndarray) -> np.ndarray:
    uint = UINT_OF_SIZE.get(a.dtype.itemsize)
    return a.view(uint) if uint is not None else a


def _pairs(
    src: np.ndarray, dst: np.ndarray, transpose: bool
) -> Iterator[tuple[int, tuple[slice, ...], np.ndarray]]:
    """Yields ``(bytes, index, part)``: ``dst[index]`` must equal ``f(part)``.

    ``part`` is a block of rows of ``src`` or, when ``transpose``, a square tile of ``src.T``
    (both tiles stay in the CPU cache, whatever the strides of the full tensors).
    """
    if transpose:
        rows, cols = dst.shape
        tile = _TRANSPOSED_TILE
        for r in range(0, rows, tile):
            for c in range(0, cols, tile):
                index = (slice(r, min(rows, r + tile)), slice(c, min(cols, c + tile)))
                part = src[index[1], index[0]].T
                yield part.size * dst.itemsize, index, part
        return
    count = dst.shape[0]
    row_bytes = max(1, dst.nbytes // max(1, count))
    step = max(1, _BLOCK_BYTES // row_bytes)
    for start in range(0, count, step):
        index = (slice(start, min(count, start + step)),)
        yield (index[0].stop - start) * row_bytes, index, src[index]


def _matches(
    src: np.ndarray,
    dst: np.ndarray,
    transpose: bool = False,
    transform: Transform | None = None,
    description: str = "verifying",
) -> bool:
    """True when ``dst == transform(transpose?(src))`` bit for bit, checked block by block.

    Args:
        src: the source (2-D when ``transpose``).
        dst: the expected result; its shape must equal the transformed source's.
        transpose: compare against ``src.T`` (read in tiles).
        transform: an element-wise function applied to each block of ``src`` (scale, cast).
        description: the progress task's name (shown only for tensors over 64 MiB).
    """
    if (src.T.shape if transpose else src.shape) != dst.shape:
        return False
    if dst.ndim == 0:
        src, dst = src.reshape(1), dst.reshape(1)
    quiet = contextlib.nullcontext(lambda amount: None)
    with progress.task(description, dst.nbytes) if dst.nbytes >= 64 << 20 else quiet as advance:
        for nbytes, index, part in _pairs(src, dst, transpose):
            if transform is not None:
                part = transform(part)
            if part is None or part.dtype != dst.dtype:
                return False
            if not np.array_equal(_bits(part), _bits(dst[index])):
                return False
            advance(nbytes)
    return True


def is_exact_copy(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` have the same dtype, shape and bytes."""
    return a.dtype == b.dtype and _matches(a, b, description="verifying a copy")


def is_transposed_copy(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``b == a.T`` bit for bit (both 2-D)."""
    if a.dtype != b.dtype or a.ndim != 2:
        return False
    return _matches(a, b, transpose=True, description="verifying a transposed copy")


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
    return _matches(cut, part, transpose=transpose, description="verifying a slice")


def _near_float32(value: float, steps: int = 2) -> list[np.float32]:
    """``value`` rounded to float32 and its neighbours, ``steps`` units in the last place."""
    out = [np.float32(value)]
    up = down = out[0]
    for _ in range(steps):
        up = np.nextafter(up, np.float32(np.inf))
        down = np.nextafter(down, np.float32(-np.inf))
        out += [up, down]
    return out


def _scaled_by(c: np.float32) -> Transform:
    def scaled(block: np.ndarray) -> np.ndarray | None:
        # Non-finite weights would make a match depend on NaN payload rules: never a match.
        if not np.isfinite(block).all():
            return None
        with np.errstate(over="ignore", under="ignore"):
            return block * c

    return scaled


def scale_factor(
    a: np.ndarray, b: np.ndarray, transpose: bool, estimate: float | None = None
) -> float | None:
    """Returns ``c`` (a float32 value, not 1) with ``b == c * transpose?(a)`` exactly, or None.

    The kernels compute ``scale * w`` in float32, so only an exact float32 match is accepted:
    ``c`` is ``estimate`` (or ``b/a`` at the largest ``|a|`` of the first block) rounded to
    float32, or one of its two neighbours each side; the first that fits the first block is
    confirmed on every block.
    """
    if a.dtype != np.float32 or b.dtype != np.float32 or a.ndim != b.ndim:
        return None
    if (a.T.shape if transpose else a.shape) != b.shape or b.size == 0:
        return None
    if b.ndim == 0:
        a, b = a.reshape(1), b.reshape(1)
    _, head, head_src = next(_pairs(a, b, transpose))
    if estimate is None:
        flat = np.asarray(head_src).reshape(-1)
        k = int(np.argmax(np.abs(flat)))
        if flat[k] == 0.0 or not np.isfinite(flat[k]):
            return None
        estimate = float(np.asarray(b[head]).reshape(-1)[k]) / float(flat[k])
    for c in _near_float32(estimate):
        if c == 1.0 or c == 0.0 or not np.isfinite(c):
            continue
        head_scaled = _scaled_by(c)(head_src)
        if head_scaled is None or not np.array_equal(_bits(head_scaled), _bits(b[head])):
            continue
        if _matches(a, b, transpose, _scaled_by(c), description="verifying a scaled copy"):
            return float(c)
        return None
    return None


def is_cast_copy(wide: np.ndarray, narrow: np.ndarray, transpose: bool) -> bool:
    """True when ``narrow == transpose?(wide).astype(narrow.dtype)`` bit for bit."""
    if wide.dtype != np.float32 or narrow.dtype.itemsize != 2 or narrow.dtype.kind not in "fV":
        return False
    dtype = narrow.dtype
    return _matches(
        wide, narrow, transpose, lambda block: block.astype(dtype), "verifying a cast copy"
    )
