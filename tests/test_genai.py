"""ONNX Runtime GenAI serves optimized folders: ``og.Model(OUTDIR)`` with no environment set-up.

Tied Llama and Qwen2 built by onnxruntime-genai's model builder (fp32, CPU) with its default
for tied models (one table read by the embedding through a Transpose) and with
``shared_embeddings=false`` (two tables); ``icl-onnx optimize DIR -o OUTDIR``; 16 greedy tokens
from ``og.Model(OUTDIR)`` in a fresh subprocess with a clean environment (not even
``import icl_onnx``) equal those of ``og.Model(DIR)``; ``icl-onnx check`` with no options passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from icl_onnx.cli.main import main as cli_main
from icl_onnx.testing.clients import NEW_TOKENS, PROMPT, genai_build, genai_generate

pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is in the test extra")


def generate(folder: Path) -> list[int]:
    """Greedy tokens from ``og.Model(folder)``, in a subprocess with a clean environment."""
    return genai_generate(folder)["tokens"]


def _tables(path: Path) -> tuple[int, int]:
    """Initializers, and Transpose nodes that read one, in a model's main graph."""
    graph = onnx.load(str(path), load_external_data=False).graph
    names = {t.name for t in graph.initializer}
    transposed = [n for n in graph.node if n.op_type == "Transpose" and n.input[0] in names]
    return len(names), len(transposed)


@pytest.mark.parametrize("name", ["llama", "qwen2"])
@pytest.mark.parametrize("shared_embeddings", [None, False], ids=["default", "not-shared"])
def test_genai_generates_the_same_tokens_from_the_optimized_folder(
    tmp_path, icl_library, name, shared_embeddings
):
    src = genai_build(name, shared_embeddings)
    out = tmp_path / "out"
    assert cli_main(["optimize", str(src), "-o", str(out), "-q"]) == 0
    config = json.loads((out / "genai_config.json").read_text())
    assert config["model"]["decoder"]["session_options"]["custom_ops_library"] == "libicl_ops.so"
    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    assert any(n.domain == "ai.icl" for n in graph.node)
    (inits_before, transposes_before), after = (
        _tables(src / "model.onnx"),
        _tables(out / "model.onnx"),
    )
    if shared_embeddings is False:  # two tables: one is gone
        assert after == (inits_before - 1, 0)
    else:  # one table read through a Transpose (ORT folds it into a copy): the Transpose is gone
        assert transposes_before == 1 and after == (inits_before, 0)

    expected = generate(src)
    assert len(expected) == len(PROMPT) + NEW_TOKENS
    assert generate(out) == expected


def test_check_passes_on_a_genai_decoder_with_no_options(tmp_path, icl_library, capsys):
    src = genai_build("llama")
    out = tmp_path / "out"
    assert cli_main(["optimize", str(src), "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    code = cli_main(["check", str(src / "model.onnx"), str(out / "model.onnx"), "--json", "-q"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    inputs = report["parity"]["inputs"]
    assert inputs["input_ids"]["shape"] == [1, 8]
    assert inputs["attention_mask"]["shape"] == [1, 16]  # 8 past + 8 new
    assert inputs["past_key_values.0.key"]["shape"] == [1, 2, 8, 16]  # head size from config
