"""Finding the ICL op library and building ONNX Runtime sessions that use it.

``share_across_processes=True`` builds sessions that keep no private copy of a weight stored
as external data: ONNX Runtime maps the data file and reads the weights in place, and with
prepacking off (``session.disable_prepacking``) it makes no packed copy of MatMul and Gemm
weights either. Every process serving the model then reads one copy from the page cache and
pays only for its activations. Weights stored inside the ``.onnx`` file are always copied into
each process, so sharing needs external data (``icl-onnx optimize`` writes it by default above
16 MiB of weights). With prepacking off, ORT packs a MatMul or Gemm weight inside every call
instead, which slows short prompts down; ``icl-onnx optimize --read-weights-in-place`` moves
every such weight to IclMatMul, which reads it in place without packing.
"""

from __future__ import annotations

import functools
import os
import sysconfig
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["LibraryNotFoundError", "library_path", "session_options", "create_session"]

_LIB_NAME = "libicl_ops.so"
_ENV_LIBRARY = "ICL_ONNX_LIBRARY"
#: Inline weights above this many bytes draw the warning that sharing needs external data.
_INLINE_WARN_BYTES = 1 << 20
#: Float MatMul/Gemm weights of at least this many elements draw the packing warning (the
#: optimizer's default ``min_elements``, the size ``--read-weights-in-place`` moves).
_PACKED_MIN_ELEMENTS = 1024


class LibraryNotFoundError(RuntimeError):
    """The compiled ICL op library is not installed."""


def _candidates() -> list[Path]:
    here = Path(__file__).resolve().parent
    out = [here / "_lib" / _LIB_NAME]
    for key in ("platlib", "purelib"):
        out.append(Path(sysconfig.get_paths()[key]) / "icl_onnx" / "_lib" / _LIB_NAME)
    return out


@functools.cache
def library_path() -> str:
    """Returns the path of the compiled ICL op library (``libicl_ops.so``).

    The environment variable ``ICL_ONNX_LIBRARY`` overrides the installed copy; it must name
    a file (a wrong override is an error, never a silent fallback to the installed copy).

    Raises:
        LibraryNotFoundError: the library was not built (reinstall the package), or
            ``ICL_ONNX_LIBRARY`` names no file.
    """
    override = os.environ.get(_ENV_LIBRARY)
    if override:
        if not Path(override).is_file():
            raise LibraryNotFoundError(
                f"{_ENV_LIBRARY}={override} is not a file; point it at a built {_LIB_NAME} "
                "or unset it"
            )
        return override
    for path in _candidates():
        if path.is_file():
            return str(path)
    raise LibraryNotFoundError(
        f"{_LIB_NAME} not found (looked in {', '.join(str(p) for p in _candidates())}); "
        "build it with `make build` or `pip install .`"
    )


def session_options(base: Any = None, *, share_across_processes: bool = False) -> Any:
    """Returns ``onnxruntime.SessionOptions`` with the ICL op library registered.

    Args:
        base: options to register the library into; a new ``SessionOptions`` if None.
        share_across_processes: turn prepacking off, so a session keeps no private copy of
            weights stored as external data and processes serving the model share them
            through the page cache (see the module docstring; the weights must be external).
    """
    import onnxruntime as ort

    options = base if base is not None else ort.SessionOptions()
    options.register_custom_ops_library(library_path())
    if share_across_processes:
        options.add_session_config_entry("session.disable_prepacking", "1")
    return options


def inline_weights_note(model: str | os.PathLike | bytes) -> str | None:
    """Why ``model`` cannot be shared across processes, if it keeps over 1 MiB of weights inline.

    Returns None when it does not.
    """
    if isinstance(model, bytes):
        inline, name = len(model), "a serialized model"
    else:
        from icl_onnx._inline_weights import inline_weight_bytes

        inline, name = inline_weight_bytes(model), os.fspath(model)
    if inline < _INLINE_WARN_BYTES:
        return None
    return (
        f"{name} holds {inline / 1e6:.1f} MB of weights inside the model file; ONNX Runtime "
        "copies them into every process, so sharing across processes needs external data "
        "(icl-onnx optimize MODEL -o OUT --external-data)"
    )


def packed_weights_note(model: str | os.PathLike | bytes) -> str | None:
    """Why ``model`` runs slower with prepacking off: the MatMul/Gemm weights ORT packs per call.

    Returns None when it has none (float, 2-D, at least 1024 elements, constant).
    """
    from icl_onnx._packed_weights import packed_weights

    source = model if isinstance(model, bytes) else os.fspath(model)
    found = packed_weights(source, _PACKED_MIN_ELEMENTS)
    if not found.names:
        return None
    name = "a serialized model" if isinstance(model, bytes) else os.fspath(model)
    return (
        f"{name} has {len(found.names)} MatMul/Gemm weights ({found.nbytes / 1e6:.1f} MB) that "
        "ONNX Runtime packs on every call with prepacking off (share_across_processes=True); "
        "icl-onnx optimize --read-weights-in-place (read_weights_in_place=True) reads them in "
        "place instead"
    )


def _warn_shared(model: str | os.PathLike | bytes) -> None:
    """Warns when ``model`` cannot be shared (inline weights) or packs weights on every call."""
    for note in (inline_weights_note(model), packed_weights_note(model)):
        if note is not None:
            warnings.warn(note, UserWarning, stacklevel=3)


def create_session(
    model: str | os.PathLike | bytes,
    providers: Sequence[str] | None = None,
    options: Any = None,
    *,
    share_across_processes: bool = False,
) -> Any:
    """Creates an ``onnxruntime.InferenceSession`` that can run ICL operators.

    Args:
        model: a model path or serialized model bytes.
        providers: execution providers; ``["CPUExecutionProvider"]`` if None.
        options: ``SessionOptions`` to start from.
        share_across_processes: keep no private copy of weights stored as external data, so
            processes serving the model share one copy (prepacking off). Warns (UserWarning)
            when the model holds more than 1 MiB of weights inline, which cannot be shared,
            and (one warning for all of them) when ORT would pack float MatMul/Gemm weights
            on every call, which ``optimize --read-weights-in-place`` avoids.
    """
    import onnxruntime as ort

    if share_across_processes:
        _warn_shared(model)
    model_arg = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(
        model_arg,
        sess_options=session_options(options, share_across_processes=share_across_processes),
        providers=list(providers) if providers else ["CPUExecutionProvider"],
    )
