"""Progress of long work, reported to a listener (the CLI draws it; the library prints nothing).

Library code opens a task and advances it::

    with progress.task("verifying copies", total=nbytes) as advance:
        for block in blocks:
            ...
            advance(len(block))

A reporter is installed for a stretch of work with ``progress.reporting(reporter)``; without
one, tasks cost one context-variable look-up and report nowhere. Totals and amounts are in
the task's ``unit``: bytes (``"B"``, the default) for reads and writes, or a count such as
``"models"``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Protocol

__all__ = ["Reporter", "task", "reporting", "Advance"]

#: Advances the open task by an amount.
Advance = Callable[[int], None]


class Reporter(Protocol):
    """Receives tasks from library code (implemented by the CLI's progress display)."""

    def start(self, description: str, total: int | None, unit: str) -> object:
        """Begins a task counted in ``unit``; returns the handle for ``advance`` and ``finish``."""

    def advance(self, handle: object, amount: int) -> None:
        """Records ``amount`` more units done on the task."""

    def finish(self, handle: object) -> None:
        """Ends the task (called even when the work fails)."""


_current: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar(
    "icl_onnx_progress", default=None
)


def _ignore(amount: int) -> None:
    del amount


@contextlib.contextmanager
def task(description: str, total: int | None = None, *, unit: str = "B") -> Iterator[Advance]:
    """Opens a task on the installed reporter and yields its ``advance`` function.

    Args:
        description: what is being done, e.g. ``"verifying copies"``.
        total: the amount of work (None when unknown).
        unit: what ``total`` and the advanced amounts count: ``"B"`` (bytes, shown in human
            units with a transfer speed) or a plural noun such as ``"models"``.
    """
    reporter = _current.get()
    if reporter is None:
        yield _ignore
        return
    handle = reporter.start(description, total, unit)
    try:
        yield lambda amount: reporter.advance(handle, amount)
    finally:
        reporter.finish(handle)


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Installs ``reporter`` for the work done inside the block (None: report nowhere)."""
    token = _current.set(reporter)
    try:
        yield
    finally:
        _current.reset(token)
