"""benchmarks/gpu_genai.py, the GPU machine's GenAI check, as far as a machine with no GPU runs it.

A dry run of the whole check (``run --cpu``) on a folder the GenAI builder writes for CUDA,
served by GenAI's CPU: tokens, logits, and the provider each ICL node ran on (ORT's profile).
"""

from __future__ import annotations

import json

import onnx
import pytest

from benchmarks import gpu_genai


def icl_ops(model) -> list[str]:
    """The ICL op types of a model's main graph, one entry per node."""
    graph = onnx.load(str(model), load_external_data=False).graph
    return [n.op_type for n in graph.node if n.domain == "ai.icl"]


def test_dry_run_on_cpu_optimizes_and_compares_a_genai_cuda_folder(tmp_path, icl_library):
    pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is in the test extra")
    gpu_genai.prepare(tmp_path, ["llama-v32k-fp16-cuda"])
    folder = tmp_path / "llama-v32k-fp16-cuda"
    assert icl_ops(folder / "model.onnx") == []  # the builder's own graph
    out = tmp_path / "report"
    assert gpu_genai.run_folders([folder], out, cpu=True) == 0
    (row,) = json.loads((out / "gpu_h200_genai.json").read_text())["rows"]
    assert row["tokens_equal"] and row["passed"]
    assert len(row["tokens"]) == 8 + 16  # the prompt and 16 new tokens
    assert row["max_abs_logit_diff"] == 0.0
    assert sorted(icl_ops(tmp_path / "llama-v32k-fp16-cuda.icl" / "model.onnx")) == [
        "IclGather",
        "IclMatMul",
    ]
    assert row["icl_nodes_by_provider"] == {"CPUExecutionProvider": ["IclGather", "IclMatMul"]}
    assert row["gpu_mib_model_exact_arena"] == {}  # no GPU: no readings
