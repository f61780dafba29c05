"""Errors that reach the user as one line (the CLI prints them without a traceback)."""

from __future__ import annotations

__all__ = ["IclArgumentError", "IclUserError"]


class IclUserError(Exception):
    """A problem with the user's input or environment; the message says what to do next.

    The CLI prints ``icl-onnx: <message>`` on stderr and exits with ``exit_code`` (2).
    """

    exit_code = 2


class IclArgumentError(IclUserError):
    """An argument of a library function has a value it cannot use.

    The message is ``f"{argument} {problem}"``, in terms of the Python argument; the CLI
    names its own option instead (``iterations`` becomes ``--iterations``).

    Attributes:
        argument: the name of the offending argument.
        problem: what is wrong with it, written to follow the argument's name.
    """

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument} {problem}")
        self.argument = argument
        self.problem = problem

    def naming(self, name: str) -> str:
        """Returns the message with the argument called ``name`` (e.g. a CLI flag)."""
        return f"{name} {self.problem}"

    def for_argument(self, argument: str) -> IclArgumentError:
        """Returns the same problem blamed on ``argument``, a caller's name for the value."""
        return IclArgumentError(argument, self.problem)
