"""What detection reports besides the share sets: skipped initializers and lossy near-copies."""

from __future__ import annotations

import dataclasses

__all__ = ["QuantizedNearCopy", "Skipped"]


@dataclasses.dataclass
class Skipped:
    """An initializer left out of the analysis, and why."""

    name: str
    reason: str


@dataclasses.dataclass(frozen=True)
class QuantizedNearCopy:
    """A float table that a quantized weight of the same model approximates.

    Attributes:
        table: the float initializer's name.
        shape: its shape ``[V, H]``.
        table_bytes: its size, which sharing the quantized weight would free.
        quantized: the quantized weight's name.
        quantized_bytes: the quantized weight's bytes (data, scales and zero points).
        consumer: the node that reads the quantized weight.
        scheme: how it is quantized, e.g. ``MatMulNBits 4-bit, block 32``.
        transposed: the quantized weight holds ``table^T``.
        max_error: the largest ``|dequantized - table|``.
        mean_error: the mean ``|dequantized - table|``.
        max_abs: the largest ``|table|``, for scale.
        max_steps: the largest error in units of its block's quantization step (at most 1).
        shareable: whether ``--share-quantized`` can rewrite the table's readers.
        reason: why not, when it cannot.
    """

    table: str
    shape: tuple[int, int]
    table_bytes: int
    quantized: str
    quantized_bytes: int
    consumer: str
    scheme: str
    transposed: bool
    max_error: float
    mean_error: float
    max_abs: float
    max_steps: float
    shareable: bool = False
    reason: str = ""
