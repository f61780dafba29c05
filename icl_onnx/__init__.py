"""icl-onnx: one copy of every shared weight in ONNX models and ONNX Runtime sessions.

Importing the package is light: :func:`library_path`, :func:`session_options` and
:func:`create_session` need only onnxruntime, so a serving environment without onnx, onnx-ir
or torch can run optimized models. Everything else (analysis, passes, export, ...) is imported
on first use (PEP 562). Importing registers nothing: the passes that write ICL nodes register
the operators' ONNX schemas when they run (``icl_onnx.schemas.register()`` does it by hand).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from icl_onnx._runtime import LibraryNotFoundError, create_session, library_path, session_options
from icl_onnx.errors import IclUserError

#: Public name -> the module that defines it, imported on first access.
_LAZY: dict[str, str] = {
    "SharePlan": "icl_onnx.planning",
    "analyze": "icl_onnx.planning",
    "ExportResult": "icl_onnx.verified_export",
    "export": "icl_onnx.verified_export",
    "load_model": "icl_onnx.model_io",
    "save_model": "icl_onnx.model_io",
    "OptimizeResult": "icl_onnx.pipeline",
    "optimize": "icl_onnx.pipeline",
    "optimize_file": "icl_onnx.pipeline",
    "optimize_files": "icl_onnx.pipeline",
    "optimize_batched_variants": "icl_onnx.pipeline",
    "BatchedVariantsResult": "icl_onnx.pipeline",
    "BatchVariantsPass": "icl_onnx.passes",
    "scan_files": "icl_onnx.pipeline",
    "FolderResult": "icl_onnx.folders",
    "optimize_folder": "icl_onnx.folders",
    "ApplySharePlanPass": "icl_onnx.passes",
    "ReadWeightsInPlacePass": "icl_onnx.passes",
    "ShareWeightsPass": "icl_onnx.passes",
    "SessionGroup": "icl_onnx.session_group",
}

__all__ = [
    "IclUserError",
    "LibraryNotFoundError",
    "create_session",
    "library_path",
    "session_options",
    *sorted(_LAZY),
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Imports a public name's module, or a submodule (``icl_onnx.schemas``), on first access."""
    module_name = _LAZY.get(name)
    if module_name is None:
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
