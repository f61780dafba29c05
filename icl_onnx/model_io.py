"""Loading models with clear errors, and saving them atomically.

Loading keeps external data lazy (memory-mapped by onnx_ir). Saving writes into a temporary
folder beside the destination and renames into place, so a failure never leaves a partial
file and the destination may be the source itself. Both report a :mod:`icl_onnx.progress` task
in bytes.

Models over :data:`EXTERNAL_DATA_AUTO_BYTES` of weights are saved with external data by
default: one ``<name>.data`` file beside the model, every tensor of a page or more starting
at a page-aligned offset. ONNX Runtime memory-maps such a file and reads the weights in place,
so they are file-backed pages that every process serving the model shares through the page
cache, instead of a private copy out of the protobuf in each process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir

from icl_onnx import progress
from icl_onnx.errors import IclArgumentError, IclUserError

__all__ = [
    "check_model_file",
    "initializer_bytes",
    "load_model",
    "save_model",
    "external_data_files",
    "EXTERNAL_DATA_AUTO_BYTES",
    "PAGE_BYTES",
    "PROTOBUF_LIMIT_BYTES",
]

#: Models with more initializer bytes than this (16 MiB) are saved with external data unless
#: asked otherwise. Below it the private copy ONNX Runtime makes of inline weights is small,
#: and one self-contained file is handier.
EXTERNAL_DATA_AUTO_BYTES = 16 << 20

#: External tensors of at least this many bytes start at a multiple of it (the page size), so
#: ONNX Runtime can map each one without touching its neighbours' pages.
PAGE_BYTES = 4096

#: A serialized ModelProto must stay under 2 GiB; this leaves room for the graph itself.
PROTOBUF_LIMIT_BYTES = (1 << 31) - (64 << 20)


def _external_tensors(model: ir.Model):
    for graph in model.graphs():
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                yield value.const_value


def external_data_files(model: ir.Model) -> list[Path]:
    """Returns the external-data files a loaded model reads, each once."""
    return sorted({Path(t.path) for t in _external_tensors(model)})


def _one_line(text: str, limit: int = 200) -> str:
    """Returns ``text`` on one line, cut to ``limit`` characters (CLI errors are one line)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _check_external_data(path: Path, model: ir.Model) -> None:
    """Raises IclUserError when an external tensor's bytes cannot be read as the model says."""
    folder = os.path.realpath(path.parent)
    for tensor in _external_tensors(model):
        data = Path(tensor.path)
        if os.path.commonpath([folder, os.path.realpath(data)]) != folder:
            raise IclUserError(
                f"{path}: tensor {tensor.name} points outside the model's folder "
                f"({tensor.location}); move its data file beside the model"
            )
        if not data.is_file():
            raise IclUserError(
                f"{path}: external data file {data.name} is missing; keep it beside the model"
            )
        stat = data.stat()
        if stat.st_nlink > 1:  # onnx_ir refuses to read hard-linked data files
            raise IclUserError(
                f"{path}: external data file {data.name} has {stat.st_nlink} hard links; "
                "replace it with a plain copy (cp, not ln)"
            )
        end = tensor.offset + (tensor.length if tensor.length is not None else tensor.nbytes)
        if stat.st_size < end:
            raise IclUserError(
                f"{path}: external data file {data.name} is shorter than the model says "
                f"({stat.st_size} < {end} bytes); it is truncated or from another model"
            )


def _tensor_values(model: ir.Model):
    """Every tensor the model stores: initializers and tensor attributes, subgraphs included."""
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.const_value is not None:
                yield value.const_value
        for node in graph:
            for attr in node.attributes.values():
                if attr.type == ir.AttributeType.TENSOR and attr.value is not None:
                    yield attr.value
                elif attr.type == ir.AttributeType.TENSORS:
                    yield from (t for t in attr.value or () if t is not None)


def _stored_count(proto: onnx.TensorProto) -> tuple[int | None, bool]:
    """Counts an inline TensorProto's data.

    Returns ``(count, is_bytes)``: the bytes of ``raw_data``, or the entries of its typed field
    (``float_data``, ...); count None for strings and unknown types.
    """
    if proto.HasField("raw_data"):
        return len(proto.raw_data), True
    try:
        field = onnx.helper.tensor_dtype_to_field(proto.data_type)
    except (KeyError, ValueError):
        return None, False
    return (None, False) if field == "string_data" else (len(getattr(proto, field)), False)


def _tensor_problem(tensor) -> str | None:
    """What is wrong with one stored tensor's shape and byte count, or None."""
    dims = list(tensor.shape)
    shape = "[" + ", ".join(str(d) for d in dims) + "]"
    if any(not isinstance(d, int) or d < 0 for d in dims):
        return f"has a negative or unknown dimension (shape {shape})"
    if isinstance(tensor, ir.ExternalTensor):
        if tensor.length is not None and tensor.length != tensor.nbytes:
            return (
                f"has {tensor.length} bytes of external data but its shape {shape} of "
                f"{tensor.dtype.name} needs {tensor.nbytes}"
            )
        return None
    proto = getattr(tensor, "raw", None)
    if not isinstance(proto, onnx.TensorProto) or proto.HasField("segment"):
        return None  # a tensor built in memory, or a segmented one: nothing to count
    stored, is_bytes = _stored_count(proto)
    if stored is None:
        return None
    if is_bytes:
        if stored != tensor.nbytes:
            return (
                f"holds {stored} bytes but its shape {shape} of {tensor.dtype.name} "
                f"needs {tensor.nbytes}"
            )
        return None
    bits = int(tensor.dtype.itemsize * 8)
    wanted = tensor.size * (2 if "COMPLEX" in tensor.dtype.name else 1)
    if bits < 8:  # sub-byte types: one byte of packed elements per entry
        wanted = -(-tensor.size * bits // 8)
    if stored != wanted:
        return f"holds {stored} values but its shape {shape} of {tensor.dtype.name} needs {wanted}"
    return None


def _check_tensors(path: Path, model: ir.Model) -> None:
    """Raises IclUserError when a stored tensor's shape is negative or disagrees with its bytes.

    The shape says how many bytes every later step reads; a file whose tensors hold fewer
    (or whose dimensions are negative or absurd) is refused here, once, before anything reads.
    """
    for tensor in _tensor_values(model):
        problem = _tensor_problem(tensor)
        if problem:
            raise IclUserError(
                f"{path}: tensor {tensor.name or '(unnamed)'} {problem}; the file is corrupt "
                "or was written by a broken exporter: export it again"
            )


def _read_model(path: Path) -> ir.Model:
    """Parses ``path`` (external data stays lazy), checking every stored tensor and its data.

    Raises:
        IclUserError: the file is missing or not an ONNX model, a tensor's shape and bytes
            disagree, or its external data is missing, truncated, outside the model's folder
            or hard-linked.
    """
    if not path.exists():
        raise IclUserError(f"{path}: no such file")
    if path.is_dir():
        raise IclUserError(f"{path} is a folder; pass the .onnx file inside it")
    size = path.stat().st_size
    try:
        with progress.task(f"loading {path.name}", size) as advance:
            model = ir.load(path)  # external data stays memory-mapped: the bar is the .onnx file
            advance(size)
    except Exception as e:  # protobuf raises DecodeError, RuntimeError, ... for junk input
        raise IclUserError(
            f"{path} is not a readable ONNX model ({type(e).__name__}: {_one_line(str(e))}); "
            "it may be truncated or another format: export or download it again"
        ) from e
    _check_tensors(path, model)
    _check_external_data(path, model)
    return model


def check_model_file(path: str | os.PathLike) -> None:
    """Checks a model file as :func:`load_model` does, for callers that hand it to ONNX Runtime.

    Raises:
        IclUserError: see :func:`load_model` (a model without nodes is accepted here).
    """
    _read_model(Path(path))


def load_model(path: str | os.PathLike) -> ir.Model:
    """Loads an ONNX model, checking its tensors and that its external data is there.

    Raises:
        IclUserError: the file is missing, is not an ONNX model, has no nodes, a stored
            tensor's shape is negative or disagrees with its bytes, or its external data is
            missing, truncated, outside the model's folder or hard-linked.
    """
    model = _read_model(Path(path))
    if len(model.graph) == 0:  # an empty file parses as an empty ModelProto
        raise IclUserError(
            f"{path} has no nodes (an empty graph, or a file that is not an ONNX model); "
            "check that this is the exported model"
        )
    return model


def initializer_bytes(model: ir.Model, below: int | None = None) -> int:
    """Bytes of all initializers (only those under ``below`` bytes when given)."""
    return sum(
        v.const_value.nbytes
        for g in model.graphs()
        for v in g.initializers.values()
        if v.const_value is not None and (below is None or v.const_value.nbytes < below)
    )


def _external_bytes(model: ir.Model, threshold: int) -> int:
    """Bytes that ``ir.save(..., external_data=...)`` writes to the data file (over threshold)."""
    return sum(
        v.const_value.nbytes
        for g in model.graphs()
        for v in g.initializers.values()
        if v.const_value is not None and v.const_value.nbytes > threshold
    )


def _wants_external(model: ir.Model) -> bool:
    if any(True for _ in _external_tensors(model)):
        return True
    return initializer_bytes(model) > EXTERNAL_DATA_AUTO_BYTES


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
        external_data: write tensors to ``<name>.data`` beside the model (tensors of a page
            or more at page-aligned offsets); None keeps external data external and moves
            models over :data:`EXTERNAL_DATA_AUTO_BYTES` (16 MiB) of weights to external data.
        size_threshold_bytes: tensors smaller than this stay inside the model file.

    Raises:
        IclUserError: the destination folder does not exist or is not writable, writing
            fails (the destination is then untouched), or the tensors kept inside the model
            file would pass protobuf's 2 GiB limit.
    """
    path = Path(path).absolute()
    folder = path.parent
    if not folder.is_dir():
        raise IclUserError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise IclUserError(f"output folder {folder} is not writable")
    if external_data is None:
        external_data = _wants_external(model)
    inline = initializer_bytes(model, below=size_threshold_bytes if external_data else None)
    if inline > PROTOBUF_LIMIT_BYTES:
        raise IclArgumentError(
            "external_data",
            f"is off, but {inline} bytes of weights do not fit in one ONNX file ({path}, "
            "2 GiB limit); save with external data",
        )
    data_name = f"{path.name}.data" if external_data else None
    if external_data:
        total = _external_bytes(model, size_threshold_bytes)
    else:
        total = initializer_bytes(model)
    staging = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=folder))
        with progress.task(f"writing {path.name}", total) as advance:
            ir.save(
                model,
                staging / path.name,
                external_data=data_name,
                size_threshold_bytes=size_threshold_bytes,
                # called before each tensor is written to the data file
                callback=(lambda tensor, info: advance(tensor.nbytes)) if external_data else None,
                alignment=PAGE_BYTES,
                align_threshold=PAGE_BYTES - 1,  # tensors of a page or more are aligned
            )
            if not external_data:  # one protobuf write: done at once
                advance(total)
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
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
