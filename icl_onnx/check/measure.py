"""Runs each model in its own worker subprocess and reads back its outputs and measurements.

The parent never builds a session: ``python -m icl_onnx.check._worker`` does, in its own
process, exchanging ``inputs.npz``, ``outputs.npz`` and ``result.json`` through a folder. A
:class:`Worker` stays alive after its memory readings and runs once each time it is asked
(``run_once``), so two models can be timed alternately (``time_alternately``) without either
session sharing a process with the other.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from icl_onnx.check.model_info import ModelInfo
from icl_onnx.check.profile import ICL_OPS
from icl_onnx.check.report import ModelMeasurement, NodePlacement
from icl_onnx.errors import IclArgumentError, IclUserError

__all__ = ["OutputSet", "Worker", "run_worker", "time_alternately"]

OutputSet = dict[str, np.ndarray]


class Worker:
    """One model's check worker: measured when started, then timed on request, then finished.

    Use as a context manager: a worker still running on exit is killed.

    Args:
        info: the model (its path is passed to the worker; the parent never loads the weights).
        input_sets: the inputs of each run.
        folder: an empty folder for the exchange files.
        providers: ORT execution providers, in priority order.
        device_id: the CUDA device when CUDA is used.
        timeout: seconds the worker may take for each step (its measurements, one timed run,
            its profile) before it is killed; None waits.
        share_across_processes: open the session with ``share_across_processes=True``.
        pss: also read the worker's PSS after the runs.
    """

    def __init__(
        self,
        info: ModelInfo,
        input_sets: Sequence[dict[str, np.ndarray]],
        folder: Path,
        *,
        providers: Sequence[str],
        device_id: int = 0,
        timeout: float | None = None,
        share_across_processes: bool = False,
        pss: bool = False,
    ) -> None:
        self.info, self.folder, self.timeout = info, folder, timeout
        self.sets = len(input_sets)
        self.intended = providers[0]
        self._shapes = _describe_shapes(input_sets[0])
        self._proc: subprocess.Popen | None = None
        self._buffer = b""
        folder.mkdir(parents=True, exist_ok=True)
        _write_request(
            folder,
            info,
            input_sets,
            providers,
            device_id,
            share_across_processes=share_across_processes,
            pss=pss,
        )

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def start(self) -> None:
        """Starts the worker and waits until it has run the input sets and read its memory.

        Raises:
            IclArgumentError: the worker ran past ``timeout``.
            IclUserError: ONNX Runtime could not create the session or run it, or it died.
        """
        with open(self.folder / "stderr.txt", "wb") as stderr:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "icl_onnx.check._worker", str(self.folder / "request.json")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=dict(os.environ),
            )
        if self._reply() != "ready":
            self._failed()

    def run_once(self, index: int) -> float:
        """Runs the model once on input set ``index`` (modulo the sets); returns its seconds."""
        reply = self._send(f"run {index}") and self._reply()
        if not reply:
            self._failed()
        try:
            return float(reply)
        except ValueError:
            self._failed(answer=reply)

    def finish(self) -> tuple[ModelMeasurement, list[OutputSet]]:
        """Lets the worker profile its model and exit; returns its measurement and outputs."""
        self._send("stop")
        assert self._proc is not None
        try:
            self._proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._too_slow()
        self._close()
        result = _result(self.folder, self.info, self._shapes, self._stderr_tail())
        outputs = read_sets(self.folder / "outputs.npz", self.sets)
        return _measurement(self.info, result, self.intended), outputs

    def kill(self) -> None:
        """Kills the worker if it still runs."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._close()

    def _close(self) -> None:
        if self._proc is not None:
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None and not pipe.closed:
                    try:
                        pipe.close()
                    except BrokenPipeError:
                        pass

    def _send(self, line: str) -> bool:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(line.encode() + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            return False
        return True

    def _reply(self) -> str:
        """The worker's next line on stdout ("" once it closed it); kills it past the timeout."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                self._too_slow()
            chunk = os.read(fd, 4096)
            if not chunk:
                return ""
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode().strip()

    def _too_slow(self) -> None:
        self.kill()
        raise IclArgumentError(
            "timeout",
            f"of {self.timeout:g} s is too short: the check worker of {self.info.path} ran past it",
        )

    def _failed(self, answer: str | None = None) -> NoReturn:
        """Raises the worker's error once it has exited.

        Args:
            answer: the line the worker sent where a run time was due, if it sent one; named in
                the error unless the worker reported an error of its own.
        """
        assert self._proc is not None
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # it answered nonsense and still runs
            self.kill()
        self._close()
        if answer is None or (self.folder / "result.json").is_file():
            _result(self.folder, self.info, self._shapes, self._stderr_tail())
        what = (
            "stopped answering"
            if answer is None
            else f"answered {answer[:80]!r} instead of a run time"
        )
        raise IclUserError(f"{self.info.path}: the check worker {what} ({self._stderr_tail()})")

    def _stderr_tail(self) -> str:
        assert self._proc is not None
        text = (self.folder / "stderr.txt").read_text(errors="replace").strip().splitlines()
        return f"exit {self._proc.returncode}: {text[-1] if text else 'no output'}"


def run_worker(
    info: ModelInfo,
    input_sets: Sequence[dict[str, np.ndarray]],
    folder: Path,
    *,
    providers: Sequence[str],
    device_id: int = 0,
    timeout: float | None = None,
    share_across_processes: bool = False,
    pss: bool = False,
) -> tuple[ModelMeasurement, list[OutputSet]]:
    """Measures one model in a subprocess (a :class:`Worker` started and finished at once).

    Raises:
        IclArgumentError: the worker ran past ``timeout``.
        IclUserError: ONNX Runtime could not create the session or run it, or the worker died.
    """
    with Worker(
        info,
        input_sets,
        folder,
        providers=providers,
        device_id=device_id,
        timeout=timeout,
        share_across_processes=share_across_processes,
        pss=pss,
    ) as worker:
        worker.start()
        return worker.finish()


def time_alternately(
    first: Worker,
    second: Worker,
    pairs: int,
    seconds: float,
    min_pairs: int,
    on_pair: Callable[[int], None] | None = None,
) -> tuple[list[float], list[float]]:
    """Times both started workers in pairs of runs, alternating which runs first.

    Pair ``i`` runs input set ``i`` (modulo the sets) once in each worker. Stops after
    ``pairs`` pairs, or once ``seconds`` have passed and ``min_pairs`` pairs ran.
    ``on_pair(1)`` is called after each pair.

    Returns:
        Each worker's run times, one per pair.
    """
    times: tuple[list[float], list[float]] = ([], [])
    start = time.monotonic()
    for i in range(pairs):
        if i >= min_pairs and time.monotonic() - start > seconds:
            break
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            times[which].append((first, second)[which].run_once(i))
        if on_pair is not None:
            on_pair(1)
    return times


def _write_request(
    folder: Path,
    info: ModelInfo,
    input_sets: Sequence[dict[str, np.ndarray]],
    providers: Sequence[str],
    device_id: int,
    *,
    share_across_processes: bool,
    pss: bool,
) -> None:
    """Writes ``inputs.npz`` (key ``"{set}/{input}"``) and ``request.json`` for the worker."""
    with open(folder / "inputs.npz", "wb") as f:
        np.savez(f, **{f"{i}/{k}": v for i, feed in enumerate(input_sets) for k, v in feed.items()})
    request = {
        "model": str(info.path.resolve()),
        "providers": list(providers),
        "device_id": device_id,
        "iterations": len(input_sets),
        "share_across_processes": share_across_processes,
        "pss": pss,
    }
    (folder / "request.json").write_text(json.dumps(request))


def _describe_shapes(feed: dict[str, np.ndarray]) -> str:
    """``"ids 1x8, mask 1x16"``: the shapes a failed run was given, for its message."""
    return ", ".join(f"{n} {'x'.join(map(str, v.shape)) or 'scalar'}" for n, v in feed.items())


def _result(folder: Path, info: ModelInfo, shapes: str, died: str) -> dict[str, Any]:
    """The worker's ``result.json``; raises its error, or that it died (``died`` says how)."""
    result_path = folder / "result.json"
    if not result_path.is_file():
        raise IclUserError(f"{info.path}: the check worker died ({died})")
    result = json.loads(result_path.read_text())
    if "error" in result:
        stage = {
            "create": "could not load it",
            "run": "could not run it",
            "profile": "could not profile it",
        }[result["stage"]]
        raise IclUserError(
            f"{info.path}: ONNX Runtime {stage}: {result['error']} (inputs: {shapes}; "
            "set them with --input-shape and --val-range)"
        )
    return result


def read_sets(path: Path, count: int) -> list[OutputSet]:
    """Reads an ``.npz`` keyed ``"{set}/{name}"`` (worker inputs or outputs), one dict a set."""
    sets: list[OutputSet] = [{} for _ in range(count)]
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            index, name = key.split("/", 1)
            sets[int(index)][name] = data[key]
    return sets


def _measurement(info: ModelInfo, result: dict[str, Any], intended: str) -> ModelMeasurement:
    """Returns the worker's readings as a :class:`ModelMeasurement`."""
    placements = [
        NodePlacement(node=name, op_type=op, provider=provider, intended=intended)
        for name, (op, provider) in sorted(result["nodes"].items())
        if op in ICL_OPS
    ]
    return ModelMeasurement(
        path=str(info.path),
        file_bytes=info.file_bytes,
        ort_initializer_bytes=result["ort_initializer_bytes"],
        ort_initializer_count=result["ort_initializer_count"],
        rss_baseline=result["rss_baseline"],
        rss_after_create=result["rss_after_create"],
        rss_after_run=result["rss_after_run"],
        gpu_baseline=result["gpu_baseline"],
        gpu_after_create=result["gpu_after_create"],
        gpu_after_run=result["gpu_after_run"],
        create_seconds=result["create_seconds"],
        run_seconds=result["run_seconds"],
        providers=result["providers"],
        placements=placements,
        node_providers=result["node_providers"],
        rss_anon_baseline=result["rss_anon_baseline"],
        rss_anon_after_run=result["rss_anon_after_run"],
        rss_file_baseline=result["rss_file_baseline"],
        rss_file_after_run=result["rss_file_after_run"],
        pss_after_run=result["pss_after_run"],
        shared_across_processes=result["share_across_processes"],
    )
