"""The CLI's progress display: one rich bar per open task, on stderr, off with ``--quiet``.

Library code opens tasks with :func:`icl_onnx.progress.task`; a command wraps its work in
``with cli_progress(args.quiet):`` to draw them. Nothing is drawn when ``--quiet`` is given or
stderr is not a terminal, and the display never writes to stdout (which carries the report and
``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from icl_onnx import progress
from icl_onnx.cli._format import human_bytes

__all__ = ["RichReporter", "make_reporter", "cli_progress", "add_quiet_argument"]


class _AmountColumn(ProgressColumn):
    """Done and total: ``12.3 MB / 92.2 MB`` for bytes, ``1 / 3 models`` for counts."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "B")
        total = task.total
        if unit == "B":
            done = human_bytes(task.completed)
            return Text(done if total is None else f"{done} / {human_bytes(total)}")
        done = f"{task.completed:.0f}"
        return Text(f"{done} {unit}" if total is None else f"{done} / {total:.0f} {unit}")


class _SpeedColumn(ProgressColumn):
    """Transfer speed of byte tasks (``45.0 MB/s``); blank for counts and before a sample."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if task.fields.get("unit", "B") != "B" or speed is None:
            return Text("")
        return Text(f"{human_bytes(speed)}/s")


class RichReporter:
    """A :class:`icl_onnx.progress.Reporter` that draws one bar per open task on ``stream``.

    The display is live only while a task is open, so whatever the command prints between
    tasks or after its work is not interleaved with bars; finished bars are removed.
    """

    def __init__(self, stream: TextIO) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            _AmountColumn(),
            _SpeedColumn(),
            TimeElapsedColumn(),
            console=Console(file=stream, highlight=False),
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._lock = threading.Lock()
        self._open = 0

    def start(self, description: str, total: int | None, unit: str) -> TaskID:
        """Adds a bar (and starts the display if this is the only open task)."""
        handle = self._progress.add_task(description, total=total, unit=unit)
        with self._lock:
            self._open += 1
            if self._open == 1:
                self._progress.start()  # draws the new bar
            else:
                self._progress.refresh()  # shows a nested task even if it ends before a tick
        return handle

    def advance(self, handle: object, amount: int) -> None:
        """Moves the task's bar on by ``amount``."""
        self._progress.advance(handle, amount)  # type: ignore[arg-type]

    def finish(self, handle: object) -> None:
        """Removes the task's bar (and stops the display when no task is left open)."""
        self._progress.remove_task(handle)  # type: ignore[arg-type]
        with self._lock:
            self._open -= 1
            if self._open == 0:
                self._progress.stop()

    def close(self) -> None:
        """Stops the display if a task was left open."""
        with self._lock:
            if self._open:
                self._open = 0
                self._progress.stop()


def make_reporter(quiet: bool) -> RichReporter | None:
    """Returns the display for stderr, or None when ``quiet`` or stderr is not a terminal."""
    stream = sys.stderr
    if quiet or stream is None or not stream.isatty():
        return None
    return RichReporter(stream)


@contextlib.contextmanager
def cli_progress(quiet: bool) -> Iterator[None]:
    """Draws the progress of library tasks run inside the block (see :func:`make_reporter`)."""
    reporter = make_reporter(quiet)
    with progress.reporting(reporter):
        try:
            yield
        finally:
            if reporter is not None:
                reporter.close()


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """Adds ``-q/--quiet`` to a long-running command's parser."""
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="draw no progress bars (they are also off when stderr is not a terminal)",
    )
