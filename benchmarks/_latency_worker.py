"""Worker of ``bench_latency``: ``python -m benchmarks._latency_worker REQUEST``.

Opens one session per entry of the request's ``sessions`` (``_memory_worker.open_session``:
model, icl-onnx's ``shared``), all with ``threads`` intra-op threads, then for each cell of
``cells`` (``[label, new tokens, past positions]``) runs every session twice to warm up and
``runs`` rounds (three times as many for inputs of at most 8 tokens, which are quick and
noisier) in which each session runs once, in a shuffled order. It prints one JSON line:
per cell, per session, the ratio of its time to the first session's (the baseline) in each
round. Alternating exposes every session to the same background load; the ratio per round
cancels most of it.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import harness
from benchmarks._memory_worker import feeds, open_session


def measure(request: dict[str, Any]) -> dict[str, list[list[float]]]:
    """``{cell label: [[ratio per round] per session]}``."""
    sessions = [open_session(spec, request["threads"]) for spec in request["sessions"]]
    order = list(range(len(sessions)))
    shuffle = random.Random(0).shuffle
    out: dict[str, list[list[float]]] = {}
    for label, length, past in request["cells"]:
        ids = np.arange(7, 7 + length, dtype=np.int64)[None]
        inputs = [feeds(s, ids, past) for s in sessions]
        for _ in range(2):
            for session, feed in zip(sessions, inputs, strict=True):
                session.run(None, feed)
        ratios: list[list[float]] = [[] for _ in sessions]
        for _ in range(request["runs"] * (3 if length <= 8 else 1)):
            spent = [0.0] * len(sessions)
            shuffle(order)
            for i in order:
                start = time.perf_counter()
                sessions[i].run(None, inputs[i])
                spent[i] = time.perf_counter() - start
            for i, seconds in enumerate(spent):
                ratios[i].append(seconds / spent[0])
        out[label] = ratios
    return out


def run(request: dict[str, Any], path: Path) -> dict[str, list[list[float]]]:
    """Writes ``request`` to ``path`` and returns :func:`measure`'s result from a child process."""
    path.write_text(json.dumps(request))
    proc = subprocess.run(
        harness.child_command("benchmarks._latency_worker", path),
        capture_output=True, text=True, check=True, cwd=harness.ROOT,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(open(sys.argv[1]).read()))), flush=True)
