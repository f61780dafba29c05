"""icl-onnx: one copy of every shared weight in ONNX models and ONNX Runtime sessions."""

from icl_onnx._runtime import LibraryNotFoundError, create_session, library_path, session_options

__all__ = ["LibraryNotFoundError", "create_session", "library_path", "session_options"]
__version__ = "0.1.0"
