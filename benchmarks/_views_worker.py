"""Worker of ``views_crossmodel``: opens sessions over the optimized files and prints its peak RSS.

``python -m benchmarks._views_worker separate|group N FEEDS.npz PATH...``: N sessions over the
paths (repeated in turn), as N ``icl_onnx.create_session`` sessions (``separate``) or one
``icl_onnx.SessionGroup`` (``group``); each runs once on the feeds it takes. Prints JSON
``{"vmhwm_bytes": ...}``.
"""

from __future__ import annotations

import json
import sys

import numpy as np

import icl_onnx
from icl_onnx._proc import peak_rss


def main(mode: str, n: int, feeds_path: str, paths: list[str]) -> int:
    """Opens and runs the sessions; returns this process's peak RSS in bytes."""
    paths = (paths * 4)[:n]
    feeds = dict(np.load(feeds_path))
    if mode == "group":
        sessions = icl_onnx.SessionGroup(paths).sessions
    else:
        sessions = [icl_onnx.create_session(p) for p in paths]
    for s in sessions:
        names = {i.name for i in s.get_inputs()}
        s.run(None, {k: v for k, v in feeds.items() if k in names})
    return peak_rss()


if __name__ == "__main__":
    mode, n, feeds_path, *paths = sys.argv[1:]
    print(json.dumps({"vmhwm_bytes": main(mode, int(n), feeds_path, paths)}))
