"""Arrays and sampled keys of initializers, each computed once per analysis."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from icl_onnx.analysis.probes import Probes, probe

__all__ = ["TensorCache"]


class TensorCache:
    """Hands out each value's array and probes, computing them once.

    External tensors come back as memory maps (no anonymous memory); tensors parsed from a
    protobuf are copied out of it once, rather than on every ``numpy()`` call.
    """

    def __init__(self) -> None:
        self._arrays: dict[ir.Value, np.ndarray] = {}
        self._probes: dict[ir.Value, Probes] = {}

    def array(self, value: ir.Value) -> np.ndarray:
        """The value's tensor as an array."""
        array = self._arrays.get(value)
        if array is None:
            array = self._arrays[value] = value.const_value.numpy()  # type: ignore[union-attr]
        return array

    def probes(self, value: ir.Value) -> Probes:
        """The value's sampled elements (see ``probes.py``)."""
        sample = self._probes.get(value)
        if sample is None:
            sample = self._probes[value] = probe(self.array(value))
        return sample

    @staticmethod
    def dtype(value: ir.Value) -> str:
        """The value's ONNX dtype name."""
        return value.const_value.dtype.name  # type: ignore[union-attr]

    @staticmethod
    def shape(value: ir.Value) -> tuple[int, ...]:
        """The value's tensor shape."""
        return tuple(int(d) for d in value.const_value.shape.numpy())  # type: ignore[union-attr]
