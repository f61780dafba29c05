"""Model folders in, folders out: GenAI and Optimum layouts, bad input, atomic output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import W, tied_model

import icl_onnx
from icl_onnx.cli.main import main as cli_main
from icl_onnx.folders import LIBRARY_NAME, optimize_folder, read_folder

GENAI_CONFIG = {
    "model": {
        "decoder": {
            "filename": "model.onnx",
            "num_key_value_heads": 2,
            "head_size": 16,
            "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
        },
        "embedding": {"filename": "embeds.onnx"},
        "type": "llama",
    },
    "search": {"max_length": 32},
}


def _save(proto: onnx.ModelProto, path: Path, data: str | None = None) -> None:
    if data is None:
        onnx.save(proto, str(path))
    else:
        onnx.save(proto, str(path), save_as_external_data=True, location=data, size_threshold=0)


def genai_folder(root: Path) -> Path:
    """A GenAI-style folder: two models that both hold the tied table, tokenizer files."""
    root.mkdir()
    _save(tied_model(), root / "model.onnx", "model.onnx.data")
    _save(tied_model(), root / "embeds.onnx")
    (root / "genai_config.json").write_text(json.dumps(GENAI_CONFIG))
    (root / "tokenizer.json").write_text("{}")
    return root


def optimum_folder(root: Path) -> Path:
    """An Optimum-style export: config.json, decoder_model.onnx and decoder_with_past."""
    root.mkdir()
    _save(tied_model(), root / "decoder_model.onnx", "decoder_model.onnx_data")
    _save(tied_model(bias=True), root / "decoder_with_past_model.onnx")
    (root / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_head": 2}))
    (root / "generation_config.json").write_text("{}")
    return root


def _run(path: Path, ids: np.ndarray) -> np.ndarray:
    return icl_onnx.create_session(path).run(None, {"ids": ids})[0]


def test_genai_folder_is_complete_and_names_the_library(tmp_path, icl_library):
    src = genai_folder(tmp_path / "in")
    out = tmp_path / "out"
    result = optimize_folder(src, out)
    assert result.folder.kind == "genai"
    assert result.folder.models == ["embeds.onnx", "model.onnx"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["embeds.onnx", "model.onnx", "shared_weights.data", "genai_config.json",
         "tokenizer.json", LIBRARY_NAME]
    )  # fmt: skip
    config = json.loads((out / "genai_config.json").read_text())
    decoder = config["model"]["decoder"]["session_options"]
    assert decoder["custom_ops_library"] == LIBRARY_NAME
    assert decoder["log_id"] == "onnxruntime-genai"  # the rest kept
    assert config["model"]["embedding"]["session_options"] == {"custom_ops_library": LIBRARY_NAME}
    assert (out / LIBRARY_NAME).read_bytes() == Path(icl_onnx.library_path()).read_bytes()
    # The table is stored once for both models (it was twice in each).
    assert result.unique_bytes == W.nbytes
    assert (out / "shared_weights.data").stat().st_size >= W.nbytes
    ids = np.array([[1, 5, 63]], dtype=np.int64)
    for name in ("model.onnx", "embeds.onnx"):
        graph = onnx.load(str(out / name), load_external_data=False).graph
        assert len(graph.initializer) == 1 and "IclMatMul" in {n.op_type for n in graph.node}
        np.testing.assert_allclose(_run(out / name, ids), _run(src / name, ids), atol=1e-5)


def test_optimum_folder(tmp_path, icl_library):
    src = optimum_folder(tmp_path / "in")
    out = tmp_path / "out"
    assert cli_main(["optimize", str(src), "-o", str(out), "-q"]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {
        "decoder_model.onnx",
        "decoder_with_past_model.onnx",
        "shared_weights.data",
        "config.json",
        "generation_config.json",
        LIBRARY_NAME,
    }
    assert "decoder_model.onnx_data" not in names  # the old data file is not copied
    ids = np.array([[0, 7]], dtype=np.int64)
    np.testing.assert_allclose(
        _run(out / "decoder_model.onnx", ids), _run(src / "decoder_model.onnx", ids), atol=1e-5
    )


def test_force_replaces_a_non_empty_output(tmp_path, capsys):
    src = optimum_folder(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    assert cli_main(["optimize", str(src), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert cli_main(["optimize", str(src), "-o", str(out), "-q", "--force"]) == 0
    assert not (out / "old.txt").exists() and (out / "decoder_model.onnx").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _no_decoder(root: Path) -> Path:
    root.mkdir()
    _save(tied_model(), root / "model.onnx")
    (root / "genai_config.json").write_text(json.dumps({"model": {"type": "llama"}}))
    return root


def _no_model(root: Path) -> Path:
    root.mkdir()
    (root / "config.json").write_text("{}")
    return root


@pytest.mark.parametrize(
    ("make", "out_name", "expected"),
    [
        (_no_model, "out", "not a model folder"),
        (_no_decoder, "out", "names no decoder"),
        (optimum_folder, ".", "inside it"),
        (optimum_folder, "sub", "inside it"),
        (optimum_folder, "missing/out", "does not exist"),
    ],
)
def test_bad_folders_exit_2_and_write_nothing(tmp_path, capsys, make, out_name, expected):
    src = make(tmp_path / "in")
    before = sorted(os.listdir(tmp_path)), sorted(os.listdir(src))
    out = src / out_name if out_name in (".", "sub") else tmp_path / out_name
    assert cli_main(["optimize", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(src))) == before


def test_read_folder_lists_models_and_their_data(tmp_path):
    folder = read_folder(genai_folder(tmp_path / "g"))
    assert folder.data_files == frozenset({"model.onnx.data"})
