"""Two models run alternately in one process: ``python -m benchmarks._measure_latency REQUEST``.

The request (JSON) names ``baseline`` and ``candidate`` model files, ``inputs`` (an ``.npz``),
``runs`` and ``threads``. Both sessions are created with the ICL op library, warmed up once,
then run alternately ``runs`` times each; the fastest run of each is printed as JSON
(``{"baseline_s": ..., "candidate_s": ...}``), with the median of the per-round ratios
candidate / baseline (``median_ratio``). Alternating keeps the two exposed to the same
background load, so their ratio is steadier than times taken minutes apart on shared cores.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import onnxruntime as ort

from icl_onnx import session_options


def _session(path: str, threads: int) -> ort.InferenceSession:
    options = session_options()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def main(argv: list[str]) -> int:
    request = json.loads(open(argv[1]).read())
    with np.load(request["inputs"], allow_pickle=False) as data:
        feeds = {k: data[k] for k in data.files}
    sessions = [_session(request[k], request["threads"]) for k in ("baseline", "candidate")]
    best = [float("inf"), float("inf")]
    ratios = []
    for session in sessions:
        session.run(None, feeds)
    for _ in range(request["runs"]):
        spent = [0.0, 0.0]
        for i, session in enumerate(sessions):
            start = time.perf_counter()
            session.run(None, feeds)
            spent[i] = time.perf_counter() - start
            best[i] = min(best[i], spent[i])
        ratios.append(spent[1] / spent[0])
    median = float(np.median(ratios))
    print(json.dumps({"baseline_s": best[0], "candidate_s": best[1], "median_ratio": median}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
