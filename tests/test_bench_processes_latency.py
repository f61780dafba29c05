"""bench_processes' latency: the sessions alternate in a shuffled order with spinning off."""

from __future__ import annotations

import argparse
import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save_model

from benchmarks import bench_processes


def _token_model(path, scale: float) -> None:
    """Y = sum over the hidden axis of table[input_ids] * scale (takes input_ids [1, n])."""
    table = np.arange(64 * 8, dtype=np.float32).reshape(64, 8) * scale
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "input_ids"], ["rows"]),
            helper.make_node("ReduceSum", ["rows", "axes"], ["Y"], keepdims=0),
        ],
        "tokens",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "n"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, "n"])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([2], np.int64), "axes"),
        ],
    )
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def test_latency_alternates_the_sessions_with_spinning_off(tmp_path):
    files = {
        "original_inline": tmp_path / "a.onnx",
        "icl_external": tmp_path / "b.onnx",
        "icl_in_place": tmp_path / "c.onnx",
    }
    for scale, path in enumerate(files.values(), start=1):
        _token_model(path, float(scale))
    args = argparse.Namespace(threads=1, latency_runs=3, prefill=16)

    result = bench_processes.latency(files, args, tmp_path)

    request = json.loads((tmp_path / "latency.json").read_text())
    assert [(s["model"], s.get("shared", False)) for s in request["sessions"]] == [
        (str(files["original_inline"]), False),
        (str(files["icl_external"]), False),
        (str(files["icl_external"]), True),
        (str(files["icl_in_place"]), True),
    ]
    assert all(s["spinning"] is False for s in request["sessions"])
    assert request["cells"] == [["prefill", 16, 0], ["decode", 1, 16]]
    assert result["labels"][:3] == ["original", "icl-onnx default", "icl-onnx shared"]
    assert len(result["labels"]) == 4
    for cell in ("prefill", "decode"):
        ratios = result[cell]
        assert len(ratios) == 4
        assert ratios[0] == 1.0  # each round's original over itself
        assert all(r > 0 for r in ratios)
        assert result[f"{cell}_shared_vs_default"] > 0
