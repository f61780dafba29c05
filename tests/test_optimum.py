"""Optimum serves optimized folders: ``ORTModelForCausalLM`` with ``icl_onnx.session_options()``.

optimum-onnx pins transformers<4.58 while this project uses 5.x, so the export and the
generation run in ``.venv-optimum`` (built on first use by ``icl_onnx.testing.clients``, then
reused).
That venv has no onnx-ir: ``icl_onnx.session_options()`` needs only onnxruntime.
"""

from __future__ import annotations

import json

import onnx
import pytest

from icl_onnx.cli.main import main as cli_main
from icl_onnx.testing.clients import NEW_TOKENS, PROMPT, optimum_export, optimum_generate


@pytest.mark.parametrize(
    ("name", "dedup"), [("gpt2", True), ("llama", False)], ids=["gpt2-dedup", "llama-plain"]
)
def test_optimum_generates_the_same_tokens_from_the_optimized_folder(
    tmp_path, icl_library, name, dedup
):
    """dedup: Optimum's own tying (one table, read through a Transpose); plain: two tables."""
    src = optimum_export(name, dedup)
    out = tmp_path / "out"
    assert cli_main(["optimize", str(src), "-o", str(out), "-q"]) == 0
    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    assert any(n.domain == "ai.icl" for n in graph.node)

    expected = optimum_generate(src, "plain")["tokens"]
    assert len(expected) == len(PROMPT) + NEW_TOKENS
    got = optimum_generate(out, "icl")
    assert got["tokens"] == expected
    assert not got["onnx_ir"]  # the serving side imported only the runtime part


def test_check_passes_on_an_optimum_with_past_decoder_with_no_options(
    tmp_path, icl_library, capsys
):
    src = optimum_export("llama", dedup=False)
    out = tmp_path / "out"
    assert cli_main(["optimize", str(src), "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    code = cli_main(["check", str(src / "model.onnx"), str(out / "model.onnx"), "--json", "-q"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    inputs = report["parity"]["inputs"]
    assert inputs["attention_mask"]["shape"] == [1, 16]  # past_sequence_length + sequence_length
    assert inputs["position_ids"]["source"] == "from the mask"
    assert inputs["past_key_values.0.key"]["shape"] == [1, 2, 8, 16]


@pytest.mark.parametrize("model", ["decoder_with_past_model", "decoder_model_merged"])
def test_check_passes_on_encoder_decoder_exports_with_no_options(
    tmp_path, icl_library, capsys, model
):
    """T5 (text2text-generation-with-past): the decoders read the encoder's KV cache."""
    src = optimum_export("t5")
    out = tmp_path / "out"
    assert cli_main(["optimize", str(src), "-o", str(out), "-q"]) == 0
    assert {p.name for p in out.glob("*.onnx")} == {p.name for p in src.glob("*.onnx")}
    capsys.readouterr()
    code = cli_main(["check", str(src / f"{model}.onnx"), str(out / f"{model}.onnx"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    inputs = report["parity"]["inputs"]
    assert inputs["input_ids"]["source"] == "token ids"
    assert inputs["input_ids"]["range"] == [0, 999]
    assert inputs["past_key_values.0.encoder.key"]["shape"] == [1, 4, 8, 16]
