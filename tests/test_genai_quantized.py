"""ONNX Runtime GenAI's quantized tied models through icl-onnx, with the real builder and runtime.

A tiny random tied Llama (``icl_onnx.testing.clients``) is built by
``onnxruntime_genai.models.builder -p int4 -e cpu`` with the builder's default for tied models
(``shared_embeddings``: the 4-bit head read by the embedding through
``Reshape -> GatherBlockQuantized``) and with an 8-bit head (``algo_config=rtn_last``:
``GatherBlockQuantized(bits=8)``). ``icl-onnx optimize DIR -o OUT`` must give the same greedy
tokens through ``og.Generator`` (a fresh process, clean environment) and a graph in which ORT
holds each tensor once. The untied build (``shared_embeddings=false``) is a lossy near-copy:
``scan`` lists it, ``--share-quantized`` shares it, and ``check --generate`` shows the drift.
"""

from __future__ import annotations

import json
import os
import tempfile

import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper as nh

import icl_onnx
from icl_onnx.cli.main import main
from icl_onnx.testing.clients import NEW_TOKENS, PROMPT, genai_build, genai_generate

#: Tensors at least this large are the model's weights; ORT folds a few tiny constants.
WEIGHT_BYTES = 1024


def _weights(initializers) -> dict[str, bytes]:
    out = {}
    for t in initializers:
        data = nh.to_array(t).tobytes()
        if len(data) >= WEIGHT_BYTES:
            out[t.name] = data
    return out


def ort_graph_weights(path) -> dict[str, bytes]:
    """The weights in the graph ORT builds for ``path`` (with the ICL op library)."""
    folder = tempfile.mkdtemp()
    options = icl_onnx.session_options()
    options.optimized_model_filepath = os.path.join(folder, "ort_graph.onnx")
    prefix = "session.optimized_model_external_initializers_"
    options.add_session_config_entry(prefix + "file_name", "ort_graph.data")
    options.add_session_config_entry(prefix + "min_size_in_bytes", "0")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return _weights(onnx.load(os.path.join(folder, "ort_graph.onnx")).graph.initializer)


@pytest.mark.parametrize(
    "options,bits", [({}, 4), ({"algo_config": "rtn_last"}, 8)], ids=["int4", "int8-head"]
)
def test_genai_quantized_tied_folder_round_trip(tmp_path, options, bits):
    src = genai_build("llama", precision="int4", options=options)
    graph = onnx.load(src / "model.onnx", load_external_data=False).graph
    (gbq,) = [n for n in graph.node if n.op_type == "GatherBlockQuantized"]
    assert {a.name: a.i for a in gbq.attribute}["bits"] == bits
    before = ort_graph_weights(src / "model.onnx")
    assert len(set(before.values())) < len(before)  # ORT folded the Reshape: the head twice

    out = tmp_path / "optimized"
    assert main(["optimize", str(src), "-o", str(out), "-q"]) == 0
    optimized = onnx.load(out / "model.onnx")
    ops = {n.op_type for n in optimized.graph.node}
    assert "IclGatherBlockQuantized" in ops and "GatherBlockQuantized" not in ops

    file_weights = _weights(optimized.graph.initializer)
    after = ort_graph_weights(out / "model.onnx")
    assert len(set(after.values())) == len(after)  # every weight once in ORT's graph
    assert sum(map(len, after.values())) == sum(map(len, set(file_weights.values())))

    want = genai_generate(src)["tokens"]
    assert len(set(want[len(PROMPT) :])) > 3  # the model does not just repeat a token
    assert genai_generate(out)["tokens"] == want


def test_genai_untied_build_reports_shares_and_checks_the_near_copy(tmp_path, capsys):
    src = genai_build("llama", False, precision="int4")
    assert main(["scan", str(src / "model.onnx")]) == 0
    text = capsys.readouterr().out
    assert "near-copy (lossy) model.embed_tokens.weight [1000x64]" in text
    assert "lm_head.MatMul.weight_Q4 (MatMulNBits 4-bit, block 32" in text

    out = tmp_path / "lossy"
    assert main(["optimize", str(src), "-o", str(out), "--share-quantized", "-q"]) == 0
    model = onnx.load(out / "model.onnx", load_external_data=False)
    assert "model.embed_tokens.weight" not in {t.name for t in model.graph.initializer}
    assert len(genai_generate(out)["tokens"]) == len(PROMPT) + NEW_TOKENS

    # check shows the drift: logits beyond tolerance, and the greedy tokens' first difference
    capsys.readouterr()
    args = [str(src / "model.onnx"), str(out / "model.onnx"), "--generate", "16", "--json", "-q"]
    code = main(["check", *args])
    report = json.loads(capsys.readouterr().out)
    greedy = report["greedy"]
    assert len(greedy["original"]) == len(greedy["optimized"]) == 16
    differs = greedy["original"] != greedy["optimized"]
    assert (greedy["first_difference"] is not None) == differs
    assert code == (1 if differs or not report["passed"] else 0)
