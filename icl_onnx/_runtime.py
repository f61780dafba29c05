"""Finding the ICL op library and building ONNX Runtime sessions that use it."""

from __future__ import annotations

import functools
import os
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["LibraryNotFoundError", "library_path", "session_options", "create_session"]

_LIB_NAME = "libicl_ops.so"
_ENV_LIBRARY = "ICL_ONNX_LIBRARY"


class LibraryNotFoundError(RuntimeError):
    """The compiled ICL op library is not installed."""


def _candidates() -> list[Path]:
    here = Path(__file__).resolve().parent
    out = []
    if os.environ.get(_ENV_LIBRARY):
        out.append(Path(os.environ[_ENV_LIBRARY]))
    out.append(here / "_lib" / _LIB_NAME)
    for key in ("platlib", "purelib"):
        out.append(Path(sysconfig.get_paths()[key]) / "icl_onnx" / "_lib" / _LIB_NAME)
    return out


@functools.cache
def library_path() -> str:
    """Returns the path of the compiled ICL op library (``libicl_ops.so``).

    The environment variable ``ICL_ONNX_LIBRARY`` overrides the installed copy.

    Raises:
        LibraryNotFoundError: the library was not built; reinstall the package.
    """
    for path in _candidates():
        if path.is_file():
            return str(path)
    raise LibraryNotFoundError(
        f"{_LIB_NAME} not found (looked in {', '.join(str(p) for p in _candidates())}); "
        "build it with `make build` or `pip install .`"
    )


def session_options(base: Any = None) -> Any:
    """Returns ``onnxruntime.SessionOptions`` with the ICL op library registered.

    Args:
        base: options to register the library into; a new ``SessionOptions`` if None.
    """
    import onnxruntime as ort

    options = base if base is not None else ort.SessionOptions()
    options.register_custom_ops_library(library_path())
    return options


def create_session(
    model: str | os.PathLike | bytes,
    providers: Sequence[str] | None = None,
    options: Any = None,
) -> Any:
    """Creates an ``onnxruntime.InferenceSession`` that can run ICL operators.

    Args:
        model: a model path or serialized model bytes.
        providers: execution providers; ``["CPUExecutionProvider"]`` if None.
        options: ``SessionOptions`` to start from.
    """
    import onnxruntime as ort

    model_arg = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(
        model_arg,
        sess_options=session_options(options),
        providers=list(providers) if providers else ["CPUExecutionProvider"],
    )
