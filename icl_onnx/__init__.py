"""icl-onnx: one copy of every shared weight in ONNX models and ONNX Runtime sessions."""

from icl_onnx import schemas as _schemas
from icl_onnx._runtime import LibraryNotFoundError, create_session, library_path, session_options
from icl_onnx.errors import IclUserError

_schemas.register()

__all__ = [
    "IclUserError",
    "LibraryNotFoundError",
    "create_session",
    "library_path",
    "session_options",
]
__version__ = "0.1.0"
