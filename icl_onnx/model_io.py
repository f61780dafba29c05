"""Loading models with clear errors, and saving them atomically.

Loading keeps external data lazy (memory-mapped by onnx_ir). Saving writes into a temporary
folder beside the destination and renames into place, so a failure never leaves a partial
file and the destination may be the source itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx_ir as ir

from icl_onnx.errors import IclUserError

__all__ = ["load_model", "save_model", "external_data_files", "EXTERNAL_DATA_AUTO_BYTES"]

#: Models with more initializer bytes than this are saved with external data (protobuf's
#: limit is 2 GiB for the whole file).
EXTERNAL_DATA_AUTO_BYTES = 1 << 30


def _external_tensors(model: ir.Model):
    for graph in model.graphs():
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                yield value.const_value


def external_data_files(model: ir.Model) -> list[Path]:
    """Returns the external-data files a loaded model reads, each once."""
    return sorted({Path(t.path) for t in _external_tensors(model)})


def load_model(path: str | os.PathLike) -> ir.Model:
    """Loads an ONNX model, checking that its external data is present and long enough.

    Raises:
        IclUserError: the file is missing, is not an ONNX model, or its external data is
            missing or truncated.
    """
    path = Path(path)
    if not path.exists():
        raise IclUserError(f"{path}: no such file")
    if path.is_dir():
        raise IclUserError(f"{path} is a folder; pass the .onnx file inside it")
    try:
        model = ir.load(path)
    except Exception as e:  # protobuf raises DecodeError, RuntimeError, ... for junk input
        raise IclUserError(
            f"{path} is not a readable ONNX model ({type(e).__name__}: {str(e)[:200]})"
        ) from e
    for tensor in _external_tensors(model):
        data = Path(tensor.path)
        if not data.is_file():
            raise IclUserError(
                f"{path}: external data file {data.name} is missing; keep it beside the model"
            )
        end = tensor.offset + (tensor.length if tensor.length is not None else tensor.nbytes)
        if data.stat().st_size < end:
            raise IclUserError(
                f"{path}: external data file {data.name} is shorter than the model says "
                f"({data.stat().st_size} < {end} bytes); it is truncated or from another model"
            )
    return model


def _wants_external(model: ir.Model) -> bool:
    if any(True for _ in _external_tensors(model)):
        return True
    total = sum(
        v.const_value.nbytes
        for g in model.graphs()
        for v in g.initializers.values()
        if v.const_value is not None
    )
    return total > EXTERNAL_DATA_AUTO_BYTES


def save_model(
    model: ir.Model,
    path: str | os.PathLike,
    *,
    external_data: bool | None = None,
    size_threshold_bytes: int = 1024,
) -> list[Path]:
    """Saves ``model`` atomically; returns the files written.

    Args:
        model: the model; its external tensors may live in files that ``path`` replaces.
        path: destination ``.onnx`` file.
        external_data: write tensors to ``<name>.data`` beside the model; None keeps external
            data external and moves models over 1 GiB of weights to external data.
        size_threshold_bytes: tensors smaller than this stay inside the model file.

    Raises:
        IclUserError: the destination folder does not exist or is not writable.
    """
    path = Path(path).absolute()
    folder = path.parent
    if not folder.is_dir():
        raise IclUserError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise IclUserError(f"output folder {folder} is not writable")
    if external_data is None:
        external_data = _wants_external(model)
    data_name = f"{path.name}.data" if external_data else None
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=folder))
    try:
        ir.save(
            model,
            staging / path.name,
            external_data=data_name,
            size_threshold_bytes=size_threshold_bytes,
        )
        written = []
        if data_name is not None and (staging / data_name).exists():
            os.replace(staging / data_name, folder / data_name)
            written.append(folder / data_name)
        os.replace(staging / path.name, path)
        written.insert(0, path)
        return written
    except OSError as e:
        raise IclUserError(f"could not write {path}: {e.strerror or e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
