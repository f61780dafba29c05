"""Variants of a base model stored as the base's tensors plus low-rank factors (tiny inline models).

Each consumer op that reads a weight (MatMul, Gemm with transB and a bias, Gather) gets a
variant whose weight is the base's plus a planted rank-3 delta; ``optimize`` of the base and
the variant writes one data file in which the variant holds only the factors, and ONNX Runtime
gives the variant's own outputs.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import icl_onnx
from icl_onnx.cli.main import main
from icl_onnx.pipeline import optimize_files, scan_files
from icl_onnx.session_group import SessionGroup

K, N, V, OUT = 96, 128, 200, 64
F32 = TensorProto.FLOAT


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


BASE = {
    "w": (rng(1).standard_normal((K, N)) * 0.05).astype(np.float32),  # MatMul B [K, N]
    "g": (rng(2).standard_normal((OUT, N)) * 0.05).astype(np.float32),  # Gemm B, transB=1
    "emb": (rng(3).standard_normal((V, K)) * 0.05).astype(np.float32),  # Gather table
    "bias": (rng(4).standard_normal(OUT) * 0.05).astype(np.float32),
}


def with_delta(array: np.ndarray, rank: int, seed: int) -> np.ndarray:
    b = rng(seed).standard_normal((array.shape[0], rank)).astype(np.float32) * 0.1
    a = rng(seed + 1).standard_normal((rank, array.shape[1])).astype(np.float32) * 0.1
    return (array + b @ a).astype(np.float32)


def build(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """ids -> Gather(emb) -> MatMul(w) -> Gemm(g, bias, transB=1) -> y."""
    nodes = [
        h.make_node("Gather", ["emb", "ids"], ["e"]),
        h.make_node("MatMul", ["e", "w"], ["m"]),
        h.make_node("Gemm", ["m", "g", "bias"], ["y"], transB=1),
    ]
    graph = h.make_graph(
        nodes,
        "variant",
        [h.make_tensor_value_info("ids", TensorProto.INT64, [5])],
        [h.make_tensor_value_info("y", F32, [5, OUT])],
        [nh.from_array(a, n) for n, a in weights.items()],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])


def run_original(model: onnx.ModelProto, ids: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"ids": ids})[0]


@pytest.fixture
def files(tmp_path):
    variant = dict(BASE)
    variant["w"] = with_delta(BASE["w"], 3, 10)
    variant["g"] = with_delta(BASE["g"], 3, 20)
    variant["emb"] = with_delta(BASE["emb"], 3, 30)
    paths = {}
    for name, weights in (("base", BASE), ("variant", variant)):
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(build(weights), paths[name])
    return paths


def test_each_consumer_reads_the_base_plus_factors_and_gives_the_variants_outputs(files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = optimize_files([files["base"], files["variant"]], out)

    relations = {member.name: member for _, member in result.plan.low_rank}
    assert set(relations) == {"w", "g", "emb"}
    for member in relations.values():
        assert member.view.rank == 3 and member.error_ulps <= 4.0
        assert member.factor_bytes == 4 * 3 * sum(member.shape)
    model = onnx.load(out / "variant.onnx", load_external_data=False)
    ops = {n.op_type: n for n in model.graph.node}
    assert set(ops) == {"IclGather", "IclMatMul"}
    assert sorted(i.name for i in model.graph.initializer) == [
        "bias",
        "emb",
        "emb.lowrank_u",
        "emb.lowrank_v",
        "g",
        "g.lowrank_u",
        "g.lowrank_v",
        "w",
        "w.lowrank_u",
        "w.lowrank_v",
    ]
    gemm = next(n for n in model.graph.node if n.input[1] == "g")
    attrs = {a.name: a.i for a in gemm.attribute}
    assert attrs == {"transpose": 1, "delta_transpose": 1}  # transB read through the factors
    assert list(gemm.input) == ["m", "g", "bias", "g.lowrank_u", "g.lowrank_v"]

    # The base's weights are stored once: the data file holds them and the factors (the bias
    # and the smallest factor stay inline in the model files).
    base_bytes = sum(BASE[name].nbytes for name in ("w", "g", "emb"))
    factors = sum(m.factor_bytes for m in relations.values())
    assert base_bytes < result.unique_bytes <= base_bytes + factors

    ids = np.array([0, 3, 199, 57, 3], dtype=np.int64)
    group = SessionGroup([out / "base.onnx", out / "variant.onnx"])
    assert group.shared_bytes == base_bytes
    got = {}
    for name, session in zip(("base", "variant"), group.sessions, strict=True):
        want = run_original(onnx.load(files[name]), ids)
        got[name] = session.run(None, {"ids": ids})[0]
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert np.abs(got["variant"] - got["base"]).max() > 1e-2  # the delta changes the outputs


def test_a_dense_change_and_an_unrelated_model_are_not_low_rank(tmp_path):
    dense = dict(BASE)
    dense["w"] = (BASE["w"] + rng(7).standard_normal((K, N)).astype(np.float32) * 1e-3).astype(
        np.float32
    )
    unrelated = {
        k: rng(8 + i).permutation(a.reshape(-1)).reshape(a.shape)
        for i, (k, a) in enumerate(BASE.items())
    }
    paths = []
    for name, weights in (("base", BASE), ("dense", dense), ("unrelated", unrelated)):
        paths.append(tmp_path / f"{name}.onnx")
        onnx.save(build(weights), paths[-1])
    plan = scan_files(paths)
    assert plan.low_rank == []
    assert {m.model for g in plan.groups for m in g.members} == {"dense.onnx"}  # exact copies
    assert "w" not in {m.name for g in plan.groups for m in g.members}


def test_scan_lists_each_low_rank_relation_with_rank_bytes_and_error(files, capsys):
    assert main(["scan", "-q", str(files["base"]), str(files["variant"])]) == 0
    out = capsys.readouterr().out
    assert out.count("low-rank") >= 3
    assert "rank 3, factors" in out and "ulp" in out
    assert "3 low-rank relation(s) to base.onnx" in out


def test_low_rank_search_can_be_turned_off(files, tmp_path, capsys):
    from icl_onnx.model_io import load_model
    from icl_onnx.planning.planner import plan_models

    models = [load_model(files["base"]), load_model(files["variant"])]
    _, groups = plan_models(models, ["b", "v"], low_rank=False)
    assert not [m for g in groups for m in g.members if m.view.rank]
    pair = [str(files["base"]), str(files["variant"])]
    assert main(["scan", "-q", "--no-low-rank", *pair]) == 0
    assert "low-rank" not in capsys.readouterr().out
    for flags, want in (([], 3), (["--no-low-rank"], 0)):
        out = tmp_path / f"out{len(flags)}"
        out.mkdir()
        assert main(["optimize", "-q", "--json", *flags, *pair, "--out-dir", str(out)]) == 0
        plan = json.loads(capsys.readouterr().out)
        ranks = [m["view"].get("rank", 0) for g in plan["groups"] for m in g["members"]]
        assert sum(r > 0 for r in ranks) == want
        variant = onnx.load(out / "variant.onnx", load_external_data=False)
        lowrank_inputs = [i for n in variant.graph.node for i in n.input if "lowrank" in i]
        assert bool(lowrank_inputs) == bool(want)


def test_optimized_variant_passes_the_onnx_checker(files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    optimize_files([files["base"], files["variant"]], out)
    icl_onnx.schemas.register()
    onnx.checker.check_model(str(out / "variant.onnx"))


@pytest.mark.parametrize(
    "node",
    [
        h.make_node("Gemm", ["x", "t"], ["y"], alpha=2.0),  # the delta would need the alpha too
        h.make_node("Add", ["x", "t"], ["y"]),  # no ICL operator reads an Add's input
    ],
    ids=["gemm_alpha", "add"],
)
def test_a_delta_no_rule_can_read_is_stored_whole(tmp_path, node, caplog):
    table = (rng(5).standard_normal((K, K)) * 0.05).astype(np.float32)
    paths = []
    for name, weight in (("base", table), ("variant", with_delta(table, 2, 40))):
        graph = h.make_graph(
            [node],
            "g",
            [h.make_tensor_value_info("x", F32, [K, K])],
            [h.make_tensor_value_info("y", F32, [K, K])],
            [nh.from_array(weight, "t")],
        )
        paths.append(tmp_path / f"{name}.onnx")
        onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), paths[-1])
    out = tmp_path / "out"
    out.mkdir()
    with caplog.at_level("INFO", logger="icl_onnx.planning.variants"):
        result = optimize_files(paths, out)
    assert "t: a consumer cannot read a low-rank view; stored whole" in caplog.text
    assert result.plan.low_rank == []
    variant = onnx.load(out / "variant.onnx")
    assert [n.op_type for n in variant.graph.node] == [node.op_type]
    assert [i.name for i in variant.graph.initializer] == ["t"]
