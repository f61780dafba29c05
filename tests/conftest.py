"""Shared test helpers."""

from __future__ import annotations

import icl_onnx


def icl_library_missing() -> str:
    """Returns why the compiled op library cannot be used, or "" when it can."""
    try:
        icl_onnx.library_path()
    except icl_onnx.LibraryNotFoundError as e:
        return str(e)
    return ""
