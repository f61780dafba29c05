"""Saving several models with one external-data file that holds each unique tensor once.

Tensors are deduplicated by identity (a tensor object that several models reference after
cross-model sharing) and by content (equal dtype, shape and bytes, confirmed byte for byte
after a hash match), reading external tensors through memory maps in blocks. Every model file
points at the same offsets of the one data file. Files are written into a staging folder and
renamed into place. Writing the data file is a :mod:`icl_onnx.progress` task over the bytes of
every tensor considered (written or found to be stored already).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx_ir as ir

from icl_onnx import progress
from icl_onnx.analysis.fingerprint import chunks, exact_digest
from icl_onnx.analysis.verify import is_exact_copy
from icl_onnx.errors import IclUserError
from icl_onnx.model_io import PAGE_BYTES

__all__ = ["SharedSave", "save_models_shared", "DATA_FILE"]

#: Name of the data file written beside the models.
DATA_FILE = "shared_weights.data"


@dataclasses.dataclass
class SharedSave:
    """What ``save_models_shared`` wrote."""

    files: list[Path]
    tensor_bytes: int  # bytes of every external initializer of every model, counted per model
    unique_bytes: int  # bytes in the data file's tensors (each unique tensor once)


def _raw_bytes(tensor: ir.TensorProtocol) -> np.ndarray:
    """The tensor's bytes as written to a data file, as a flat uint8 array.

    A memory map for external tensors (nothing copied into anonymous memory); packed sub-byte
    types (int4, ...) go through ``tobytes``.
    """
    if tensor.dtype.bitwidth < 8:
        return np.frombuffer(tensor.tobytes(), np.uint8)
    return np.ascontiguousarray(tensor.numpy()).reshape(-1).view(np.uint8)


def _content_key(tensor: ir.TensorProtocol, raw: np.ndarray) -> tuple:
    return (tensor.dtype, tuple(tensor.shape.numpy()), exact_digest(raw))


class _DataFile:
    """The shared data file being written: each unique tensor once, at page-aligned offsets.

    A tensor already stored (the same object, or equal dtype, shape and bytes confirmed byte
    for byte after a digest match) is not written again.
    """

    def __init__(self, file, out: Path) -> None:
        self._file = file
        self._out = out
        self._by_id: dict[int, ir.ExternalTensor] = {}
        self._by_content: dict[tuple, tuple[ir.TensorProtocol, ir.ExternalTensor]] = {}
        self._originals: list[ir.TensorProtocol] = []  # keeps ids unique while writing
        self.unique_bytes = 0

    def store(self, tensor: ir.TensorProtocol, name: str) -> ir.ExternalTensor:
        """Returns where ``tensor``'s bytes are in the data file, writing them if new."""
        stored = self._by_id.get(id(tensor))
        if stored is None:
            raw = _raw_bytes(tensor)
            key = _content_key(tensor, raw)
            hit = self._by_content.get(key)
            if hit is not None and is_exact_copy(_raw_bytes(hit[0]), raw):
                stored = hit[1]
            else:
                stored = self._write(tensor, raw, name)
                self._by_content[key] = (tensor, stored)
            self._by_id[id(tensor)] = stored
            self._originals.append(tensor)
        return stored

    def _write(self, tensor: ir.TensorProtocol, raw: np.ndarray, name: str) -> ir.ExternalTensor:
        offset = -self._file.tell() % PAGE_BYTES + self._file.tell()  # ORT maps each tensor
        self._file.seek(offset)
        for chunk in chunks(raw):  # a memory map is never copied whole
            self._file.write(chunk.data)
        self.unique_bytes += tensor.nbytes
        return ir.ExternalTensor(
            DATA_FILE, offset, tensor.nbytes, tensor.dtype,
            shape=tensor.shape, name=name, base_dir=self._out,
        )  # fmt: skip


def _external_values(models: list[ir.Model], size_threshold_bytes: int) -> list[ir.Value]:
    """The initializers (every graph of every model) large enough for the data file."""
    return [
        value
        for model in models
        for graph in model.graphs()
        for value in graph.initializers.values()
        if value.const_value is not None and value.const_value.nbytes >= size_threshold_bytes
    ]


def _load_small_external(models: list[ir.Model], threshold: int) -> None:
    """Reads external tensors under ``threshold`` into memory: they go inside the model file.

    Left external, they would still point at the input's data file, which is not written.
    """
    for model in models:
        for graph in model.graphs():
            for value in graph.initializers.values():
                tensor = value.const_value
                if isinstance(tensor, ir.ExternalTensor) and tensor.nbytes < threshold:
                    value.const_value = ir.Tensor(tensor.numpy(), name=value.name)


def save_models_shared(
    models: list[ir.Model],
    names: list[str],
    out_dir: str | os.PathLike,
    *,
    size_threshold_bytes: int = 1024,
) -> SharedSave:
    """Writes ``out_dir/<name>`` for each model and one ``out_dir/shared_weights.data``.

    Args:
        models: the models; their initializers are re-pointed at the written data file.
        names: file names, one per model (no folders).
        out_dir: an existing folder.
        size_threshold_bytes: smaller tensors stay inside their model file.

    Raises:
        IclUserError: the folder is missing or not writable, or two names are equal.
    """
    out = Path(out_dir).absolute()
    if not out.is_dir():
        raise IclUserError(f"output folder {out} does not exist; create it first")
    if len(set(names)) != len(names):
        raise IclUserError(f"two models would be written to the same file name: {names}")
    _load_small_external(models, size_threshold_bytes)
    values = _external_values(models, size_threshold_bytes)
    total = sum(value.const_value.nbytes for value in values)  # type: ignore[union-attr]
    staging = Path(tempfile.mkdtemp(prefix=".icl-shared.", dir=out))
    try:
        with (
            open(staging / DATA_FILE, "wb") as file,
            progress.task(f"writing {DATA_FILE}", total) as advance,
        ):
            data = _DataFile(file, out)
            for value in values:
                tensor = value.const_value
                assert tensor is not None
                stored = data.store(tensor, value.name or "")
                value.const_value = ir.ExternalTensor(
                    DATA_FILE, stored.offset, stored.length, stored.dtype,
                    shape=stored.shape, name=value.name or "", base_dir=out,
                )  # fmt: skip
                advance(tensor.nbytes)
        for model, name in zip(models, names, strict=True):
            ir.save(model, staging / name)
        written = [out / DATA_FILE]
        os.replace(staging / DATA_FILE, out / DATA_FILE)
        for name in names:
            os.replace(staging / name, out / name)
            written.append(out / name)
        return SharedSave(written, total, data.unique_bytes)
    except OSError as e:
        raise IclUserError(f"could not write to {out}: {e.strerror or e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
