"""icl-onnx: one copy of every shared weight in ONNX models and ONNX Runtime sessions."""

from icl_onnx import schemas as _schemas
from icl_onnx._runtime import LibraryNotFoundError, create_session, library_path, session_options
from icl_onnx.analysis import SharePlan, analyze
from icl_onnx.errors import IclUserError
from icl_onnx.model_io import load_model, save_model
from icl_onnx.passes import ApplySharePlanPass, ShareWeightsPass
from icl_onnx.pipeline import OptimizeResult, optimize, optimize_file, optimize_files, scan_files
from icl_onnx.session_group import SessionGroup
from icl_onnx.verified_export import ExportResult, export

_schemas.register()

__all__ = [
    "ApplySharePlanPass",
    "ExportResult",
    "IclUserError",
    "LibraryNotFoundError",
    "OptimizeResult",
    "SessionGroup",
    "SharePlan",
    "ShareWeightsPass",
    "analyze",
    "create_session",
    "export",
    "library_path",
    "load_model",
    "optimize",
    "optimize_file",
    "optimize_files",
    "save_model",
    "scan_files",
    "session_options",
]
__version__ = "0.1.0"
