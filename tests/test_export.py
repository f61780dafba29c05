"""Export of tiny Hugging Face models with both exporters, icl_onnx.export and `icl-onnx export`."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch  # the test extra installs torch and transformers: no skip when they are missing
from onnx import numpy_helper

import icl_onnx
from icl_onnx import verified_export
from icl_onnx.cli.main import main
from icl_onnx.errors import IclArgumentError, IclUserError
from icl_onnx.hf_folder import infer_task
from icl_onnx.models import build_model, llama_config
from icl_onnx.torch_export import export_onnx, flatten_outputs
from icl_onnx.verified_export import ExportMismatchError

# vocab * hidden = 9600 > 8192, the onnxscript optimizer's constant-folding input limit: with a
# smaller embedding the dynamo exporter folds Transpose(W) into a transposed copy.
TINY = {"hidden": 32, "vocab": 300, "layers": 1, "heads": 2}
V, H = TINY["vocab"], TINY["hidden"]


def _initializers(path) -> dict[str, np.ndarray]:
    model = onnx.load(path)
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _consumers(model: onnx.ModelProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if name in n.input]


def test_llama_config_mlp_is_twice_hidden_unless_a_width_is_given():
    default = llama_config(64, 100, 2, 4)
    wide = llama_config(64, 100, 2, 4, tied=False, intermediate=176)
    assert (default.intermediate_size, default.tie_word_embeddings) == (128, True)
    assert (wide.intermediate_size, wide.tie_word_embeddings) == (176, False)
    assert default.num_key_value_heads == default.num_attention_heads == 4


@pytest.mark.parametrize(
    "arch",
    ["bert", "llama"],
)
def test_torchscript_export_of_tied_model_holds_embedding_and_its_transposed_copy(tmp_path, arch):
    module, inputs = build_model(arch, **TINY)
    path = tmp_path / "m.onnx"
    info = export_onnx(module, path, inputs, dynamo=False)

    assert info.exporter == "torchscript"
    inits = _initializers(path)
    table = [w for w in inits.values() if w.shape == (V, H)]
    copy = [w for w in inits.values() if w.shape == (H, V)]
    assert len(table) == 1 and len(copy) == 1
    np.testing.assert_array_equal(copy[0], table[0].T)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_dynamo_export_of_tied_model_holds_embedding_once_with_a_transpose(tmp_path, arch):
    module, inputs = build_model(arch, **TINY)
    path = tmp_path / "m.onnx"
    export_onnx(module, path, inputs, dynamo=True)

    model = onnx.load(path)
    inits = _initializers(path)
    assert not [n for n, w in inits.items() if w.shape == (H, V)]
    (name,) = [n for n, w in inits.items() if w.shape == (V, H)]
    kinds = sorted(n.op_type for n in _consumers(model, name))
    assert kinds == ["Gather", "Transpose"]
    (transpose,) = [n for n in _consumers(model, name) if n.op_type == "Transpose"]
    assert [n.op_type for n in _consumers(model, transpose.output[0])] == ["MatMul"]


@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_export_has_named_inputs_and_dynamic_batch_and_sequence(tmp_path, dynamo):
    module, inputs = build_model("bert", **TINY)
    path = tmp_path / "m.onnx"
    info = export_onnx(module, path, inputs, dynamo=dynamo)
    assert info.input_names == ("input_ids", "attention_mask")
    assert info.output_names == ("logits",)

    other = {
        "input_ids": torch.randint(0, V, (3, 5), generator=torch.Generator().manual_seed(7)),
        "attention_mask": torch.ones(3, 5, dtype=torch.long),
    }
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {k: v.numpy() for k, v in other.items()})
    with torch.no_grad():
        want = module(**other).logits.numpy()
    assert got.shape == (3, 5, V)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


def test_flatten_outputs_names_model_output_fields_and_skips_none():
    t = torch.zeros(1)
    assert [n for n, _ in flatten_outputs({"logits": t, "past": None, "hidden": (t, t)})] == [
        "logits",
        "hidden.0",
        "hidden.1",
    ]


@pytest.mark.usefixtures("icl_library")
def test_export_shares_the_tied_embedding_and_matches_torch(tmp_path):
    module, inputs = build_model("llama", **TINY)
    path = tmp_path / "llama.onnx"
    result = icl_onnx.export(module, path, kwargs=inputs, dynamo=False)

    assert result.exporter == "torchscript" and result.fallback_reason == ""
    (group,) = result.optimize.plan.groups
    assert [m.view.kind for m in group.members] == ["transpose"]
    inits = _initializers(path)
    assert [w.shape for w in inits.values() if V in w.shape] == [(V, H)]
    assert any(n.op_type == "IclMatMul" for n in onnx.load(path).graph.node)
    assert all(m.ok and m.max_abs_error < 1e-4 for m in result.outputs)


@pytest.mark.usefixtures("icl_library")
def test_export_falls_back_to_torchscript_when_dynamo_fails(tmp_path, monkeypatch):
    real = verified_export.export_onnx

    def fake(module, path, inputs, dynamo=True, **options):
        if dynamo:
            raise RuntimeError("simulated dynamo failure")
        return real(module, path, inputs, dynamo=dynamo, **options)

    monkeypatch.setattr(verified_export, "export_onnx", fake)
    module, inputs = build_model("bert", **TINY)
    result = icl_onnx.export(module, tmp_path / "b.onnx", kwargs=inputs)
    assert result.exporter == "torchscript"
    assert "simulated dynamo failure" in result.fallback_reason


def test_export_without_fallback_raises_the_dynamo_error(tmp_path, monkeypatch):
    def fake(module, path, inputs, dynamo=True, **options):
        raise RuntimeError("simulated dynamo failure")

    monkeypatch.setattr(verified_export, "export_onnx", fake)
    module, inputs = build_model("bert", **TINY)
    with pytest.raises(RuntimeError, match="simulated"):
        icl_onnx.export(module, tmp_path / "b.onnx", kwargs=inputs, fallback=False)


def test_export_when_both_exporters_fail_raises_one_user_error(tmp_path, monkeypatch):
    def fake(module, path, inputs, dynamo=True, **options):
        raise RuntimeError(f"simulated {'dynamo' if dynamo else 'torchscript'} failure")

    monkeypatch.setattr(verified_export, "export_onnx", fake)
    module, inputs = build_model("bert", **TINY)
    with pytest.raises(IclUserError, match="both exporters failed.*simulated torchscript"):
        icl_onnx.export(module, tmp_path / "b.onnx", kwargs=inputs)


class _Affine(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.linear(x)


def test_export_names_positional_inputs_after_forward_parameters(tmp_path):
    result = icl_onnx.export(
        _Affine(), tmp_path / "a.onnx", args=(torch.randn(2, 4),), dynamo=False
    )
    assert result.export_info.input_names == ("x",)
    assert [m.name for m in result.outputs] == ["output"]


def test_export_whose_outputs_differ_raises_exit_1_and_leaves_no_file(tmp_path):
    path = tmp_path / "a.onnx"
    with pytest.raises(ExportMismatchError, match="export already differs") as e:
        icl_onnx.export(
            _Affine(), path, args=(torch.randn(2, 4),), dynamo=False, atol=-1.0, rtol=-1.0
        )
    assert e.value.exit_code == 1
    assert not path.exists()


@pytest.mark.parametrize(
    ("architecture", "task"),
    [
        ("BertForMaskedLM", "masked-lm"),
        ("LlamaForCausalLM", "causal-lm"),
        ("GPT2LMHeadModel", "causal-lm"),
        ("BartForConditionalGeneration", "seq2seq-lm"),
        ("ViTForImageClassification", "image-classification"),
        ("BertModel", "feature-extraction"),
    ],
)
def test_task_is_inferred_from_the_config_architecture(architecture, task):
    config = type("Config", (), {"architectures": [architecture], "is_encoder_decoder": True})
    assert infer_task(config) == task


def test_config_without_architecture_asks_for_task():
    with pytest.raises(IclArgumentError, match="task is needed"):
        infer_task(type("Config", (), {"architectures": None}))


@pytest.fixture
def bert_folder(tmp_path):
    module, _ = build_model("bert", **TINY)
    folder = tmp_path / "bert"
    module.save_pretrained(folder)
    return folder


@pytest.mark.usefixtures("icl_library")
def test_cli_exports_a_saved_folder_and_reports_the_exporter(bert_folder, tmp_path, capsys):
    out = tmp_path / "out" / "bert.onnx"
    code = main(["export", str(bert_folder), "-o", str(out), "--exporter", "torchscript"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "BertForMaskedLM (masked-lm) with the torchscript exporter" in stdout
    assert "outputs match PyTorch" in stdout
    assert [w.shape for w in _initializers(out).values() if V in w.shape] == [(V, H), (V,)]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "no such folder"),
        ("empty", "has no config.json"),
        ("no_weights", "cannot load"),
        ("bad_json", "config.json"),
    ],
)
def test_cli_rejects_a_bad_folder_with_one_line_and_exit_2(tmp_path, capsys, setup, message):
    folder = tmp_path / "model"
    if setup != "missing":
        folder.mkdir()
    if setup == "no_weights":
        (folder / "config.json").write_text(
            '{"model_type": "bert", "architectures": ["BertForMaskedLM"]}'
        )
    if setup == "bad_json":
        (folder / "config.json").write_text("{")
    code = main(["export", str(folder), "-o", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("icl-onnx export: ") and message in err
    assert not (tmp_path / "x.onnx").exists()
