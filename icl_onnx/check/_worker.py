"""Subprocess that measures one model: ``python -m icl_onnx.check._worker REQUEST.json``.

The request names the model, the providers and an ``inputs.npz``; the worker writes the outputs
to ``outputs.npz`` and its measurements to ``result.json`` in the same folder. Nothing but the
model's own session lives in this process, so its peak RSS (VmHWM) is the model's cost:
recorded after the imports (baseline), after the session is created and after the runs. Its
private (RssAnon) and file-backed (RssFile) resident bytes are read at the baseline and after the
runs, and its PSS after the runs when the request asks (``pss``). ``share_across_processes``
opens the session as :func:`icl_onnx.create_session` does with that option.

After those readings the worker writes ``ready`` on its stdout and serves timed runs: each
``run K`` line on stdin is answered with the seconds of one run on input set ``K``, until
``stop`` (or the end of stdin). The parent alternates these runs with the other model's worker,
so both models are timed under the same load; the memory readings are taken before them.
Anything else written to stdout (by a library) goes to stderr, which keeps the replies clean.

Then a second session runs once with profiling on and saves the graph ORT built
(``optimized_model_filepath``, initializers to an external file) so the initializer bytes of
that graph and the provider of each node can be reported.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import onnx
import onnxruntime as ort

from icl_onnx._proc import memory_status, peak_rss, proportional_set_size
from icl_onnx._runtime import session_options
from icl_onnx.check.gpu import GpuMemoryProbe
from icl_onnx.check.measure import read_sets
from icl_onnx.check.profile import node_providers

_CUDA = "CUDAExecutionProvider"


def _provider_options(request: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for provider in request["providers"]:
        if provider == _CUDA:
            out.append(
                {
                    "device_id": str(request.get("device_id", 0)),
                    "arena_extend_strategy": "kSameAsRequested",
                    # Float32 products at full precision in both models: ORT's default TF32
                    # rounds MatMul inputs to 10 bits, errors far above the float32
                    # tolerances (docs/check.md).
                    "use_tf32": "0",
                }
            )
        else:
            out.append({})
    return out


def _session(request: dict[str, Any], options: ort.SessionOptions) -> ort.InferenceSession:
    return ort.InferenceSession(
        request["model"],
        sess_options=options,
        providers=request["providers"],
        provider_options=_provider_options(request),
    )


def _initializer_bytes(path: Path) -> tuple[int, int]:
    model = onnx.load(str(path), load_external_data=False)
    total = 0
    for tensor in model.graph.initializer:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        total += int(np.prod(tensor.dims, dtype=np.int64)) * itemsize
    return total, len(model.graph.initializer)


def _fail(folder: Path, stage: str, error: BaseException) -> int:
    message = str(error).strip().splitlines()
    result = {
        "error": message[0] if message else type(error).__name__,
        "stage": stage,
        "detail": traceback.format_exc(),
    }
    (folder / "result.json").write_text(json.dumps(result))
    return 3


def _profile(request: dict[str, Any], folder: Path, feed: dict[str, np.ndarray]) -> dict[str, Any]:
    """Runs a profiled session once; returns where nodes ran and the initializer bytes ORT kept."""
    graph_path = folder / "ort_graph.onnx"
    options = session_options()
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "profile")
    options.optimized_model_filepath = str(graph_path)
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", "ort_graph.data"
    )
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", "0"
    )
    session = _session(request, options)
    session.run(None, feed)
    nodes, counts = node_providers(session.end_profiling())
    initializer_bytes, initializer_count = _initializer_bytes(graph_path)
    return {
        "nodes": nodes,
        "node_providers": counts,
        "ort_initializer_bytes": initializer_bytes,
        "ort_initializer_count": initializer_count,
    }


def serve(
    session: ort.InferenceSession,
    feeds: list[dict[str, np.ndarray]],
    requests: TextIO,
    replies: TextIO,
) -> None:
    """Says ``ready``, then answers each ``run K`` with the seconds of one run on set ``K``.

    Returns on ``stop`` or at the end of ``requests``.
    """
    replies.write("ready\n")
    replies.flush()
    for line in requests:
        command, *rest = line.split()
        if command == "stop":
            return
        feed = feeds[int(rest[0]) % len(feeds)]
        start = time.perf_counter()
        session.run(None, feed)
        replies.write(f"{time.perf_counter() - start!r}\n")
        replies.flush()


def measure(request: dict[str, Any], folder: Path, replies: TextIO) -> int:
    """Measures the model named in ``request``; writes ``outputs.npz`` and ``result.json``.

    Between the measurements and the profile it serves timed runs (``serve``), replying on
    ``replies``.
    """
    feeds = read_sets(folder / "inputs.npz", request["iterations"])
    shared = bool(request.get("share_across_processes"))
    options = session_options(share_across_processes=shared)
    # The two models' workers take turns on the same cores (``serve``): a worker whose thread
    # pool spins after its run takes CPU from the other's run, so neither spins.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    use_gpu = _CUDA in request["providers"]
    gpu = GpuMemoryProbe(int(request.get("device_id", 0))) if use_gpu else None
    result: dict[str, Any] = {"gpu_source": gpu.source if gpu else None}
    result["share_across_processes"] = shared
    result["gpu_baseline"] = gpu.used() if gpu else None
    baseline = memory_status()
    result["rss_baseline"] = baseline["VmHWM"]
    result["rss_anon_baseline"] = baseline["RssAnon"]
    result["rss_file_baseline"] = baseline["RssFile"]
    start = time.perf_counter()
    try:
        session = _session(request, options)
    except Exception as e:
        return _fail(folder, "create", e)
    result["create_seconds"] = time.perf_counter() - start
    result["rss_after_create"] = peak_rss()
    result["gpu_after_create"] = gpu.used() if gpu else None
    result["providers"] = session.get_providers()
    names = [o.name for o in session.get_outputs()]
    outputs: dict[str, np.ndarray] = {}
    runs = []
    try:
        for i, feed in enumerate(feeds):
            start = time.perf_counter()
            values = session.run(None, feed)
            runs.append(time.perf_counter() - start)
            outputs.update({f"{i}/{n}": v for n, v in zip(names, values, strict=True)})
    except Exception as e:
        return _fail(folder, "run", e)
    result["run_seconds"] = runs
    after = memory_status()
    result["rss_after_run"] = after["VmHWM"]
    result["rss_anon_after_run"] = after["RssAnon"]
    result["rss_file_after_run"] = after["RssFile"]
    result["pss_after_run"] = proportional_set_size() if request.get("pss") else None
    result["gpu_after_run"] = gpu.used() if gpu else None
    with open(folder / "outputs.npz", "wb") as f:
        np.savez(f, **outputs)
    try:
        serve(session, feeds, sys.stdin, replies)
    except Exception as e:
        return _fail(folder, "run", e)
    del session
    try:
        result.update(_profile(request, folder, feeds[0]))
    except Exception as e:
        return _fail(folder, "profile", e)
    (folder / "result.json").write_text(json.dumps(result))
    return 0


def main(argv: list[str]) -> int:
    """Entry point: ``argv[0]`` is the request JSON written by ``measure.run_worker``."""
    request_path = Path(argv[0])
    request = json.loads(request_path.read_text())
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not mix with replies
    with replies:
        return measure(request, request_path.parent, replies)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
