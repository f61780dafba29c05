"""benchmarks/gpu_genai.py, the GPU machine's GenAI check, as far as a machine with no GPU runs it.

The log parser on both forms of ORT's verbose placement log, and a dry run of the whole check
(``run --cpu``) on a folder the GenAI builder writes for CUDA, served by GenAI's CPU.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_genai

PREFIX = "2026-12-04 15:13:42.03 [V:onnxruntime:onnxruntime-genai, session_state.cc:1601 Verify]"


def test_placements_from_a_log_that_splits_the_nodes_by_provider():
    log = "\n".join([
        f"{PREFIX}  Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 3",
        f"{PREFIX}   IclGather (/model/embed_tokens/Gather)",
        f"{PREFIX}   MatMul (/model/layers.0/MatMul)",
        f"{PREFIX}   IclMatMul (/lm_head/MatMul)",
        f"{PREFIX}  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2",
        f"{PREFIX}   Shape (/model/Shape)",
        f"{PREFIX}   IclMatMul (/other/MatMul)",
    ])  # fmt: skip
    placed = gpu_genai.icl_placements(log, ["IclGather", "IclMatMul", "IclMatMul"])
    assert placed == {
        "CUDAExecutionProvider": ["IclGather", "IclMatMul"],
        "CPUExecutionProvider": ["IclMatMul"],
    }


def test_placements_from_a_log_that_places_every_node_on_one_provider():
    log = f"{PREFIX}  All nodes placed on [CUDAExecutionProvider]. Number of nodes: 41"
    assert gpu_genai.icl_placements(log, ["IclGather", "IclMatMul"]) == {
        "CUDAExecutionProvider": ["IclGather", "IclMatMul"]
    }
    assert gpu_genai.icl_placements("no placement here", ["IclMatMul"]) == {}


def test_dry_run_on_cpu_optimizes_and_compares_a_genai_cuda_folder(tmp_path, icl_library):
    pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is in the test extra")
    gpu_genai.prepare(tmp_path, ["llama-v32k-fp16-cuda"])
    folder = tmp_path / "llama-v32k-fp16-cuda"
    assert gpu_genai.icl_ops(folder / "model.onnx") == []  # the builder's own graph
    out = tmp_path / "report"
    assert gpu_genai.run_folders([folder], out, cpu=True) == 0
    (row,) = json.loads((out / "gpu_h200_genai.json").read_text())["rows"]
    assert row["tokens_equal"] and row["passed"]
    assert len(row["tokens"]) == 8 + 16  # the prompt and 16 new tokens
    assert row["max_abs_logit_diff"] == 0.0
    assert sorted(gpu_genai.icl_ops(tmp_path / "llama-v32k-fp16-cuda.icl" / "model.onnx")) == [
        "IclGather",
        "IclMatMul",
    ]
    assert row["icl_nodes_by_provider"] == {"CPUExecutionProvider": ["IclGather", "IclMatMul"]}
    assert row["gpu_mib_model_exact_arena"] == {}  # no GPU: no readings
