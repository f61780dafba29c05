"""Worker processes of ``bench_processes``: ``python -m benchmarks._memory_worker REQUEST``.

Each opens one session on the request's model (or none, for the baseline), runs prefill
chunks whose token ids cover the whole vocabulary (ONNX Runtime maps external data lazily, so a
Gather table's pages are resident only for the ids read), prints one JSON line with its memory
from ``/proc/self/status`` (after the imports and after the workload), then waits until its stdin
closes, so the parent can read the PSS of several live workers side by side.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np
import onnxruntime as ort

import icl_onnx
from benchmarks.harness import huge_pages_mode
from icl_onnx._proc import memory_status


def open_session(spec: dict[str, Any], threads: int) -> ort.InferenceSession:
    """Opens a CPU session as ``spec`` says.

    Keys: ``model``, ``shared`` (icl-onnx's option), ``prepacking`` and ``constant_folding``
    (plain ORT switches, for the zero-tool workaround), ``spinning`` (False: idle intra-op
    workers park at once, so sessions run in turn do not slow each other), ``huge_pages``
    (``ICL_ONNX_HUGE_PAGES`` while the session is created).
    """
    if "huge_pages" in spec:
        with huge_pages_mode(spec["huge_pages"]):
            return open_session({k: v for k, v in spec.items() if k != "huge_pages"}, threads)
    options = icl_onnx.session_options(share_across_processes=spec.get("shared", False))
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spec.get("spinning", True):
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not spec.get("prepacking", True):
        options.add_session_config_entry("session.disable_prepacking", "1")
    disabled = [] if spec.get("constant_folding", True) else ["ConstantFolding"]
    return ort.InferenceSession(
        spec["model"], options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
    )


def feeds(session: ort.InferenceSession, ids: np.ndarray, past: int = 0) -> dict[str, np.ndarray]:
    """Inputs for one chunk of token ids (``[1, n]``) after ``past`` cached positions.

    Masks are ones, positions count up from ``past``, a KV cache (``past_key_values.*``,
    Optimum's names) holds zeros.
    """
    out = {}
    length = ids.shape[1]
    if not any(arg.name.startswith("past_key_values.") for arg in session.get_inputs()):
        past = 0  # no KV cache: the model sees the chunk alone
    for arg in session.get_inputs():
        if arg.name == "input_ids":
            out[arg.name] = ids
        elif arg.name == "attention_mask":
            out[arg.name] = np.ones((1, past + length), np.int64)
        elif arg.name == "token_type_ids":
            out[arg.name] = np.zeros_like(ids)
        elif arg.name == "position_ids":
            out[arg.name] = np.arange(past, past + length, dtype=np.int64)[None]
        elif arg.name.startswith("past_key_values."):
            shape = [d if isinstance(d, int) else 1 if "batch" in d else past for d in arg.shape]
            out[arg.name] = np.zeros(shape, np.float32)
        else:
            raise ValueError(f"no rule to fill input {arg.name}")
    return out


def serve(request: dict[str, Any]) -> None:
    """Opens the session, covers the vocabulary, reports, then waits for stdin to close."""
    icl_onnx.session_options()  # onnxruntime and the op library load before the baseline
    before = memory_status()
    seconds = 0.0
    if request.get("model"):
        session = open_session(request, request["threads"])
        start = time.perf_counter()
        vocab, chunk = request["vocab"], request["chunk"]
        for first in range(0, vocab, chunk):
            ids = np.arange(first, min(vocab, first + chunk), dtype=np.int64)[None]
            session.run(None, feeds(session, ids))
        seconds = time.perf_counter() - start
    after = memory_status()
    print(json.dumps({"before": before, "after": after, "workload_s": seconds}), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    serve(json.loads(open(sys.argv[1]).read()))
