"""Arrays, samples and row/column signatures of initializers, each computed once per analysis."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from icl_onnx.analysis.probes import Probes, probe, vector_signatures

__all__ = ["TensorCache"]


class TensorCache:
    """Hands out each value's array, samples and row/column signatures, computing them once.

    External tensors come back as memory maps and in-memory tensors as their own arrays, kept
    for the analysis (no copy); their signatures are computed when first asked for (a memory
    map is then only paged in where it is read). A tensor parsed from a protobuf is copied out
    of it: from the first copy, its samples and (2-D) signatures are all taken at once and the
    copy is not kept, as most tensors are never read again and keeping every copy would double
    the model in anonymous memory; a second request (a candidate being verified) keeps it.
    """

    def __init__(self) -> None:
        self._arrays: dict[ir.Value, np.ndarray] = {}
        self._probes: dict[ir.Value, Probes] = {}
        self._signatures: dict[tuple[ir.Value, int], np.ndarray] = {}

    def array(self, value: ir.Value) -> np.ndarray:
        """The value's tensor as an array."""
        array = self._arrays.get(value)
        if array is not None:
            return array
        tensor = value.const_value
        assert tensor is not None
        array = tensor.numpy()
        if isinstance(tensor, (ir.ExternalTensor, ir.Tensor)) or value in self._probes:
            self._arrays[value] = array
        else:  # a transient copy: take everything the analysis may need from it now
            self._probes[value] = probe(array)
            if array.ndim == 2:
                for axis in (0, 1):
                    self._signatures[(value, axis)] = vector_signatures(array, axis)
        return array

    def probes(self, value: ir.Value) -> Probes:
        """The value's sampled elements (see ``probes.py``)."""
        if value not in self._probes:
            array = self.array(value)  # a transient copy records its samples itself
            if value not in self._probes:
                self._probes[value] = probe(array)
        return self._probes[value]

    def signatures(self, value: ir.Value, axis: int) -> np.ndarray:
        """One signature per row (``axis=0``) or column (``axis=1``) of a 2-D value."""
        key = (value, axis)
        if key not in self._signatures:
            self._signatures[key] = vector_signatures(self.array(value), axis)
        return self._signatures[key]

    def head_signatures(self, value: ir.Value, axis: int, count: int) -> list[int]:
        """Signatures of the first ``count`` rows or columns (reads only those if not cached)."""
        cached = self._signatures.get((value, axis))
        if cached is not None:
            return cached[:count].tolist()
        array = self.array(value)
        head = array[:count] if axis == 0 else array[:, :count]
        return vector_signatures(head, axis).tolist()

    @staticmethod
    def dtype(value: ir.Value) -> str:
        """The value's ONNX dtype name."""
        return value.const_value.dtype.name  # type: ignore[union-attr]

    @staticmethod
    def shape(value: ir.Value) -> tuple[int, ...]:
        """The value's tensor shape."""
        return tuple(int(d) for d in value.const_value.shape.numpy())  # type: ignore[union-attr]
