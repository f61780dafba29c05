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

import numpy as np

from icl_onnx.check.model_info import ModelInfo
from icl_onnx.check.profile import ICL_OPS
from icl_onnx.check.report import ModelMeasurement, NodePlacement
from icl_onnx.errors import IclUserError

__all__ = ["run_worker"]

OutputSet = dict[str, np.ndarray]


def run_worker(
    info: ModelInfo,
    input_sets: Sequence[dict[str, np.ndarray]],
    folder: Path,
    *,
    providers: Sequence[str],
    device_id: int = 0,
    timeout: float | None = None,
) -> tuple[ModelMeasurement, list[OutputSet]]:
    """Measures one model in a subprocess.

    Args:
        info: the model (its path is passed to the worker; the parent never loads the weights).
        input_sets: the inputs of each run.
        folder: an empty folder for the exchange files.
        providers: ORT execution providers, in priority order.
        device_id: the CUDA device when CUDA is used.
        timeout: seconds before the worker is killed; None waits.

    Raises:
        IclUserError: ONNX Runtime could not create the session or run it, or the worker died.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "inputs.npz", "wb") as f:
        np.savez(f, **{f"{i}/{k}": v for i, feed in enumerate(input_sets) for k, v in feed.items()})
    request = {
        "model": str(info.path.resolve()),
        "providers": list(providers),
        "device_id": device_id,
        "iterations": len(input_sets),
    }
    (folder / "request.json").write_text(json.dumps(request))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "icl_onnx.check._worker", str(folder / "request.json")],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ),
        )
    except subprocess.TimeoutExpired:
        raise IclUserError(
            f"{info.path}: the check worker ran past {timeout:g} s; raise --timeout"
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
        raise IclUserError(f"{info.path}: ONNX Runtime {stage}: {result['error']}")
    outputs: list[OutputSet] = [{} for _ in input_sets]
    with np.load(folder / "outputs.npz", allow_pickle=False) as data:
        for key in data.files:
            index, name = key.split("/", 1)
            outputs[int(index)][name] = data[key]
    intended = providers[0]
    placements = [
        NodePlacement(node=name, op_type=op, provider=provider, intended=intended)
        for name, (op, provider) in sorted(result["nodes"].items())
        if op in ICL_OPS
    ]
    measurement = ModelMeasurement(
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
    )
    return measurement, outputs
