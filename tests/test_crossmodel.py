"""Several models optimized together: groups across files, one data file, same numbers."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from builders import PROJECTION as B
from builders import TABLE as W
from builders import decoder, encoder, encoder_decoder_feeds

from icl_onnx.cli.main import main
from icl_onnx.reference import evaluator
from icl_onnx.shared_store import DATA_FILE


@pytest.fixture
def pair(tmp_path):
    paths = [tmp_path / "encoder.onnx", tmp_path / "decoder.onnx"]
    for path, proto in zip(paths, (encoder(), decoder()), strict=True):
        onnx.save(proto, path)
    return paths


def test_scan_of_two_files_reports_the_groups_that_cross_them(pair, capsys):
    assert main(["scan", *map(str, pair), "--json", "--min-elements", "16"]) == 0
    data = json.loads(capsys.readouterr().out)
    kinds = {
        (g["model"], g["canonical"], m["model"], m["name"]): m["kind"]
        for g in data["groups"]
        for m in g["members"]
    }
    assert kinds == {
        ("encoder.onnx", "emb", "decoder.onnx", "tok"): "exact",
        ("encoder.onnx", "B", "decoder.onnx", "B16"): "cast",
    }
    # within the decoder, the head and the slice already read its own table
    own, borrowed = data["plans"][1]["groups"]
    assert (own["canonical"], own["origin"]) == ("tok", "")
    assert {m["name"]: m["kind"] for m in own["members"]} == {
        "lm_head": "transpose",
        "q": "row-slice",
    }
    # and B16 reads the encoder's B, which the decoder's plan adds to it
    assert (borrowed["canonical"], borrowed["origin"]) == ("B", "encoder.onnx")
    assert [(m["name"], m["kind"]) for m in borrowed["members"]] == [("B16", "cast")]


def test_scan_of_two_files_prints_a_table(pair, capsys):
    assert main(["scan", *map(str, pair), "--min-elements", "16"]) == 0
    out = capsys.readouterr().out
    assert "groups across files" in out and "decoder.onnx:B16" in out and "cast" in out
    # the encoder's B stays, and its MatMul reads it through IclMatMul as the decoder does
    (b_row,) = [line for line in out.splitlines() if line.startswith("│ B [32, 32] FLOAT  ")]
    assert "MatMul→IclMatMul" in b_row and "shared across files" in b_row
    assert "B [32, 32] FLOAT (of encoder.onnx)" in out


def test_optimize_two_files_stores_each_unique_tensor_once(pair, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert main(["optimize", *map(str, pair), "--out-dir", str(out), "--min-elements", "16"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([DATA_FILE, *(p.name for p in pair)])
    assert (out / DATA_FILE).stat().st_size >= W.nbytes + B.nbytes
    assert (out / DATA_FILE).stat().st_size < W.nbytes + B.nbytes + 2 * 4096  # alignment only
    where = {}
    for path in pair:
        proto = onnx.load(out / path.name, load_external_data=False)
        for t in proto.graph.initializer:
            info = {e.key: e.value for e in t.external_data}
            where[(path.name, t.name)] = (info["location"], int(info["offset"]))
        assert all(n.domain == "ai.icl" for n in proto.graph.node if n.op_type != "Gather")
    assert where[("decoder.onnx", "tok")] == where[("encoder.onnx", "emb")]
    assert len(set(where.values())) == 2  # W and B, nothing else

    for path in pair:
        original = evaluator(str(path))
        optimized = evaluator(str(out / path.name))
        f = encoder_decoder_feeds()
        f = {k: v for k, v in f.items() if k in original.input_names}
        for a, b in zip(original.run(None, f), optimized.run(None, f), strict=True):
            np.testing.assert_allclose(b.astype(np.float32), a.astype(np.float32), atol=2e-2)


def test_optimize_needs_out_dir_for_several_models(pair, tmp_path, capsys):
    assert main(["optimize", *map(str, pair), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "--out-dir" in capsys.readouterr().err


def test_optimize_out_dir_must_exist(pair, tmp_path, capsys):
    assert main(["optimize", *map(str, pair), "--out-dir", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
