"""Errors that reach the user as one line (the CLI prints them without a traceback)."""

from __future__ import annotations

__all__ = ["IclUserError"]


class IclUserError(Exception):
    """A problem with the user's input or environment; the message says what to do next.

    The CLI prints ``icl-onnx: <message>`` on stderr and exits with ``exit_code`` (2).
    """

    exit_code = 2
