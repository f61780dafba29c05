"""MatMulNBits' block-quantized weight layout: geometry, dequantization, round-to-nearest packing.

ONNX Runtime's ``MatMulNBits`` stores a float weight ``W[N, K]`` (one row per output feature) as
``B[N, n_blocks, blob]`` uint8 with ``n_blocks = ceil(K / block_size)`` and
``blob = block_size * bits / 8``: inside a row, element ``k`` is in block ``k // block_size``; for
bits below 8 several elements share a byte, the lowest bits first. The last block is padded when
``K`` is not a multiple of ``block_size``. Each block has one scale (``scales``, ``N * n_blocks``
values, float32 or float16) and one zero point (``zero_points``, uint8, packed like the data: each
row of ``n_blocks`` zero points takes ``ceil(n_blocks * bits / 8)`` bytes; absent means
``2 ** (bits - 1)``). The value is ``float32(q - zero_point) * float32(scale)`` rounded once to the
scales' type: the formula of ONNX Runtime's ``GatherBlockQuantized`` and of the ICL kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BlockLayout", "dequantize", "quantize"]

#: Bit widths the ICL kernels read.
SUPPORTED_BITS = (4, 8)


@dataclass(frozen=True)
class BlockLayout:
    """Geometry of one MatMulNBits weight.

    Attributes:
        n: Rows (MatMulNBits' ``N``; the vocabulary of a tied LM head).
        k: Logical row length (MatMulNBits' ``K``; the hidden size).
        bits: Bits per element (4 or 8).
        block_size: Elements per block (a power of 2, at least 16).
    """

    n: int
    k: int
    bits: int
    block_size: int

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str:
        """Returns why the geometry is invalid, or "" when it is valid."""
        if self.bits not in SUPPORTED_BITS:
            return f"bits must be 4 or 8, got {self.bits}"
        if self.block_size < 16 or self.block_size & (self.block_size - 1):
            return f"block_size must be a power of 2 and at least 16, got {self.block_size}"
        if self.n < 0 or self.k < 1:
            return f"N must be >= 0 and K >= 1, got N={self.n}, K={self.k}"
        return ""

    @property
    def n_blocks(self) -> int:
        """Blocks per row: ``ceil(K / block_size)``."""
        return -(-self.k // self.block_size)

    @property
    def blob(self) -> int:
        """Bytes per block."""
        return self.block_size * self.bits // 8

    @property
    def per_byte(self) -> int:
        """Elements per byte."""
        return 8 // self.bits

    @property
    def zero_point_row_bytes(self) -> int:
        """Bytes of packed zero points per row: ``ceil(n_blocks * bits / 8)``."""
        return -(-self.n_blocks * self.bits // 8)

    @property
    def default_zero_point(self) -> int:
        """The zero point MatMulNBits assumes when none is stored."""
        return 1 << (self.bits - 1)

    @property
    def b_shape(self) -> tuple[int, int, int]:
        """Shape of ``B``."""
        return (self.n, self.n_blocks, self.blob)

    @property
    def stored_bytes(self) -> int:
        """Bytes of ``B``."""
        return self.n * self.n_blocks * self.blob


def _unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Splits each byte of ``packed[..., m]`` into elements, lowest bits first: ``[..., count]``."""
    if bits == 8:
        return packed[..., :count].astype(np.int32)
    per_byte, mask = 8 // bits, (1 << bits) - 1
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    parts = (packed[..., None] >> shifts) & mask
    # The row length spelled out: -1 cannot be inferred when there are no rows.
    row = packed.shape[-1] * per_byte
    return parts.reshape(*packed.shape[:-1], row)[..., :count].astype(np.int32)


def dequantize(
    b: np.ndarray,
    scales: np.ndarray,
    zero_points: np.ndarray | None,
    layout: BlockLayout,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Returns the dequantized rows ``W[rows, :K]`` in the scales' dtype.

    Args:
        b: ``B`` (any shape with ``N * n_blocks * blob`` uint8 elements).
        scales: ``N * n_blocks`` scales (float32 or float16).
        zero_points: Packed uint8 zero points (``N * zero_point_row_bytes``), or None.
        layout: The weight's geometry.
        rows: Row numbers to read (already in ``[0, N)``); None reads every row.
    """
    b = np.asarray(b, dtype=np.uint8).reshape(layout.n, layout.n_blocks * layout.blob)
    s = np.asarray(scales).reshape(layout.n, layout.n_blocks)
    sel = np.arange(layout.n) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
    padded = layout.n_blocks * layout.block_size
    q = _unpack(b[sel], layout.bits, padded).reshape(len(sel), layout.n_blocks, layout.block_size)
    if zero_points is None:
        zp = np.full((len(sel), layout.n_blocks), layout.default_zero_point, dtype=np.int32)
    else:
        zp_rows = np.asarray(zero_points, dtype=np.uint8).reshape(
            layout.n, layout.zero_point_row_bytes
        )
        zp = _unpack(zp_rows[sel], layout.bits, layout.n_blocks)
    values = (q - zp[..., None]).astype(np.float32) * s[sel].astype(np.float32)[..., None]
    return values.reshape(len(sel), padded)[:, : layout.k].astype(s.dtype)


def _pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Packs ``values[..., m]`` (m a multiple of 8 / bits) into bytes, lowest bits first."""
    if bits == 8:
        return values.astype(np.uint8)
    per_byte = 8 // bits
    parts = values.astype(np.uint8).reshape(*values.shape[:-1], -1, per_byte)
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    return np.bitwise_or.reduce(parts << shifts, axis=-1).astype(np.uint8)


def quantize(
    w: np.ndarray, bits: int, block_size: int, symmetric: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, BlockLayout]:
    """Quantizes ``w[N, K]`` to MatMulNBits' layout by rounding to nearest.

    Symmetric quantization stores no zero points (MatMulNBits' default ``2 ** (bits - 1)``);
    asymmetric stores packed uint8 zero points. Returns ``(B, scales, zero_points, layout)`` with
    scales in ``w``'s dtype.
    """
    n, k = w.shape
    layout = BlockLayout(n, k, bits, block_size)
    padded = np.zeros((n, layout.n_blocks * block_size), dtype=np.float32)
    padded[:, :k] = w.astype(np.float32)
    blocks = padded.reshape(n, layout.n_blocks, block_size)
    qmax = (1 << bits) - 1
    if symmetric:
        zp = np.full((n, layout.n_blocks), layout.default_zero_point, dtype=np.int32)
        amax = np.abs(blocks).max(axis=-1)
        scale = amax / layout.default_zero_point
    else:
        lo, hi = np.minimum(blocks.min(axis=-1), 0), np.maximum(blocks.max(axis=-1), 0)
        scale = (hi - lo) / qmax
        safe = np.where(scale == 0, 1, scale)
        zp = np.clip(np.round(-lo / safe), 0, qmax).astype(np.int32)
    scale = scale.astype(w.dtype)
    safe = np.where(scale == 0, 1, scale).astype(np.float32)
    q = np.clip(np.round(blocks / safe[..., None]) + zp[..., None], 0, qmax).astype(np.int32)
    b = _pack(q.reshape(n, -1), bits).reshape(layout.b_shape)
    zero_points = None
    if not symmetric:
        row = layout.zero_point_row_bytes * layout.per_byte
        zp_padded = np.zeros((n, row), dtype=np.int32)
        zp_padded[:, : layout.n_blocks] = zp
        zero_points = _pack(zp_padded, bits).reshape(-1)
    return b, scale.reshape(-1), zero_points, layout
