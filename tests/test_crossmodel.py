"""Several models optimized together: groups across files, one data file, same numbers."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from icl_onnx.cli.main import main
from icl_onnx.reference import evaluator
from icl_onnx.shared_store import DATA_FILE

V, H = 64, 32
RNG = np.random.default_rng(2)
W = RNG.standard_normal((V, H)).astype(np.float32)
B = RNG.standard_normal((H, H)).astype(np.float32)
F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


def model(nodes, inits, inputs, outputs) -> onnx.ModelProto:
    graph = h.make_graph(nodes, "g", inputs, outputs, [nh.from_array(a, n) for n, a in inits])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])


def encoder() -> onnx.ModelProto:
    """Embedding table and a projection B."""
    return model(
        [h.make_node("Gather", ["emb", "ids"], ["e"]), h.make_node("MatMul", ["e", "B"], ["y"])],
        [("emb", W), ("B", B)],
        [h.make_tensor_value_info("ids", TensorProto.INT64, ["b"])],
        [h.make_tensor_value_info("y", F32, ["b", H])],
    )


def decoder() -> onnx.ModelProto:
    """An exact copy of the table, its transposed copy as LM head, a row slice, an fp16 B."""
    return model(
        [
            h.make_node("Gather", ["tok", "ids"], ["e"]),
            h.make_node("MatMul", ["e", "lm_head"], ["logits"]),
            h.make_node("MatMul", ["e", "q"], ["q_out"]),
            h.make_node("MatMul", ["x16", "B16"], ["z"]),
        ],
        [
            ("tok", W.copy()),
            ("lm_head", W.T.copy()),
            ("q", W[:H].copy()),
            ("B16", B.astype(np.float16)),
        ],
        [
            h.make_tensor_value_info("ids", TensorProto.INT64, ["b"]),
            h.make_tensor_value_info("x16", F16, ["b", H]),
        ],
        [
            h.make_tensor_value_info("logits", F32, ["b", V]),
            h.make_tensor_value_info("q_out", F32, ["b", H]),
            h.make_tensor_value_info("z", F16, ["b", H]),
        ],
    )


@pytest.fixture
def pair(tmp_path):
    paths = [tmp_path / "encoder.onnx", tmp_path / "decoder.onnx"]
    for path, proto in zip(paths, (encoder(), decoder()), strict=True):
        onnx.save(proto, path)
    return paths


def feeds() -> dict[str, np.ndarray]:
    return {
        "ids": RNG.integers(0, V, size=4),
        "x16": RNG.standard_normal((4, H)).astype(np.float16),
    }


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
        f = feeds()
        f = {k: v for k, v in f.items() if k in original.input_names}
        for a, b in zip(original.run(None, f), optimized.run(None, f), strict=True):
            np.testing.assert_allclose(b.astype(np.float32), a.astype(np.float32), atol=2e-2)


def test_optimize_needs_out_dir_for_several_models(pair, tmp_path, capsys):
    assert main(["optimize", *map(str, pair), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "--out-dir" in capsys.readouterr().err


def test_optimize_out_dir_must_exist(pair, tmp_path, capsys):
    assert main(["optimize", *map(str, pair), "--out-dir", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
