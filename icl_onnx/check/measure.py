"""Runs one model in a fresh worker subprocess and reads back its outputs and measurements.

The parent never builds a session: ``python -m icl_onnx.check._worker`` does, in its own
process, exchanging ``inputs.npz``, ``outputs.npz`` and ``result.json`` through a folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icl_onnx.check.model_info import ModelInfo
from icl_onnx.check.profile import ICL_OPS
from icl_onnx.check.report import ModelMeasurement, NodePlacement
from icl_onnx.errors import IclArgumentError, IclUserError

__all__ = ["OutputSet", "run_worker"]

OutputSet = dict[str, np.ndarray]


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
    """Measures one model in a subprocess.

    Args:
        info: the model (its path is passed to the worker; the parent never loads the weights).
        input_sets: the inputs of each run.
        folder: an empty folder for the exchange files.
        providers: ORT execution providers, in priority order.
        device_id: the CUDA device when CUDA is used.
        timeout: seconds before the worker is killed; None waits.
        share_across_processes: open the session with ``share_across_processes=True``.
        pss: also read the worker's PSS after the runs.

    Raises:
        IclArgumentError: the worker ran past ``timeout``.
        IclUserError: ONNX Runtime could not create the session or run it, or the worker died.
    """
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
    result = _run(folder, info, timeout, _describe_shapes(input_sets[0]))
    outputs = read_sets(folder / "outputs.npz", len(input_sets))
    return _measurement(info, result, providers[0]), outputs


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


def _run(folder: Path, info: ModelInfo, timeout: float | None, shapes: str) -> dict[str, Any]:
    """Runs the worker on ``folder``'s request and returns its ``result.json``."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "icl_onnx.check._worker", str(folder / "request.json")],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ),
        )
    except subprocess.TimeoutExpired:
        raise IclArgumentError(
            "timeout", f"of {timeout:g} s is too short: the check worker of {info.path} ran past it"
        ) from None
    result_path = folder / "result.json"
    if not result_path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise IclUserError(
            f"{info.path}: the check worker died (exit {proc.returncode}): {tail[0]}"
        )
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
