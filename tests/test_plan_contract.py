"""The plan is the contract: scan reports what optimize applies; rules plug in by being listed.

For each graph feature (Constant nodes, If branches, Transpose nodes, several files) the plan
that ``analyze``/``scan`` returns equals the one ``optimize`` applies, and its freed bytes are
the tensor bytes the optimized model no longer stores.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from builders import IR_VERSION
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import icl_onnx
from icl_onnx import rules
from icl_onnx.cli.main import main
from icl_onnx.model_io import load_model
from icl_onnx.passes import ApplySharePlanPass, ShareWeightsPass, planned
from icl_onnx.pipeline import optimize_file, optimize_files, scan_files
from icl_onnx.planning import View, analyze, plan_sharing
from icl_onnx.planning import planner as planner_module
from icl_onnx.reference import evaluator

V, H = 64, 32
RNG = np.random.default_rng(7)
W = RNG.standard_normal((V, H)).astype(np.float32)
WT = np.ascontiguousarray(W.T)
B = RNG.standard_normal((H, H)).astype(np.float32)
MIN = 16


def vi(name, shape, dtype=TensorProto.FLOAT):
    return h.make_tensor_value_info(name, dtype, shape)


def make(nodes, inits, inputs, outputs):
    graph = h.make_graph(nodes, "g", inputs, outputs, [nh.from_array(a, n) for n, a in inits])
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto, full_check=True)
    return proto


def constant_model():
    """W^T is a Constant node (the reproduction of issue 11): scan used to miss it."""
    return make(
        [
            h.make_node("Constant", [], ["embT"], value=nh.from_array(WT, "c")),
            h.make_node("Gather", ["emb", "ids"], ["e"]),
            h.make_node("MatMul", ["e", "embT"], ["y"]),
        ],
        [("emb", W)],
        [vi("ids", ["b"], TensorProto.INT64)],
        [vi("y", ["b", V])],
    )


def if_model():
    """Each If branch holds a private copy of W^T, named like a value of the other branch."""

    def branch(name, other):
        return h.make_graph(
            [
                h.make_node("Identity", ["x"], [f"w_{other}"]),
                h.make_node("MatMul", ["x", f"w_{name}"], [f"y_{name}"]),
            ],
            name,
            [],
            [vi(f"y_{name}", ["b", V])],
            [nh.from_array(WT.copy(), f"w_{name}")],
        )

    return make(
        [
            h.make_node(
                "If",
                ["c"],
                ["y"],
                then_branch=branch("then", "else"),
                else_branch=branch("else", "then"),
            )
        ],
        [],
        [vi("c", [], TensorProto.BOOL), vi("x", ["b", H])],
        [vi("y", ["b", V])],
    )


def transpose_model():
    """Gather(W) and MatMul(Transpose(W)), plus a Gemm reading an exact copy of W."""
    return make(
        [
            h.make_node("Gather", ["emb", "ids"], ["e"]),
            h.make_node("Transpose", ["emb"], ["embT"], perm=[1, 0]),
            h.make_node("MatMul", ["e", "embT"], ["y"]),
            h.make_node("Gemm", ["e", "copy"], ["g"], transB=1),
        ],
        [("emb", W), ("copy", W.copy())],
        [vi("ids", ["b"], TensorProto.INT64)],
        [vi("y", ["b", V]), vi("g", ["b", V])],
    )


def transpose_of_a_copy_model():
    """A Transpose no rule removes (a Neg reads it) reads an exact copy, which must stay."""
    return make(
        [
            h.make_node("Gather", ["emb", "ids"], ["e"]),
            h.make_node("MatMul", ["x", "copy"], ["y"]),
            h.make_node("Transpose", ["copy"], ["copyT"], perm=[1, 0]),
            h.make_node("Neg", ["copyT"], ["n"]),
        ],
        [("emb", W), ("copy", W.copy())],
        [vi("ids", ["b"], TensorProto.INT64), vi("x", ["b", V])],
        [vi("e", ["b", H]), vi("y", ["b", H]), vi("n", [H, V])],
    )


FEATURES = {
    "constant": constant_model,
    "if-branches": if_model,
    "transpose": transpose_model,
    "transpose-of-a-copy": transpose_of_a_copy_model,
}


def stored_bytes(model: ir.Model) -> int:
    """Bytes of every initializer and Constant tensor, in every graph."""
    total = 0
    for graph in model.graphs():
        total += sum(v.const_value.nbytes for v in graph.initializers.values() if v.const_value)
        for node in graph:
            if node.op_type == "Constant" and "value" in node.attributes:
                total += node.attributes["value"].value.nbytes
    return total


@pytest.mark.parametrize("feature", FEATURES)
def test_scan_reports_exactly_what_optimize_applies_and_frees(feature, tmp_path):
    src, dst = tmp_path / "m.onnx", tmp_path / "o.onnx"
    onnx.save(FEATURES[feature](), src)
    scanned = analyze(load_model(src), MIN)
    result = optimize_file(src, dst, min_elements=MIN)
    assert scanned.groups and (scanned.freed_bytes > 0 or feature == "transpose-of-a-copy")
    assert scanned == result.plan
    assert scanned.to_dict() == result.plan.to_dict()
    assert stored_bytes(load_model(src)) - stored_bytes(load_model(dst)) == scanned.freed_bytes


def test_scan_cli_of_a_constant_node_prints_what_optimize_frees(tmp_path, capsys):
    src = tmp_path / "const.onnx"
    onnx.save(constant_model(), src)
    assert main(["scan", str(src), "--json", "--min-elements", str(MIN)]) == 0
    scanned = json.loads(capsys.readouterr().out)
    out = tmp_path / "o.onnx"
    assert main(["optimize", str(src), "-o", str(out), "--json", "--min-elements", str(MIN)]) == 0
    applied = json.loads(capsys.readouterr().out)
    assert scanned["freed_bytes"] == applied["freed_bytes"] == WT.nbytes
    assert scanned["groups"] == applied["groups"]


def test_analyze_lifts_constants_on_a_copy_and_leaves_the_model_alone():
    model = ir.from_proto(constant_model())
    before = ir.to_proto(model).SerializeToString()
    plan = analyze(model, MIN)
    assert [m.name for g in plan.groups for m in g.members] == ["embT"]
    assert ir.to_proto(model).SerializeToString() == before
    # The plan describes the lifted copy, so it does not apply to the model as it is.
    with pytest.raises(ir.passes.PreconditionError, match="another model"):
        ApplySharePlanPass(plan)(model)


def test_renamed_canonical_is_reported_under_its_final_name():
    plan = analyze(ir.from_proto(if_model()), MIN)
    (group,) = plan.groups
    model = ir.from_proto(if_model())
    applied = icl_onnx.optimize(model, MIN)
    assert group.canonical == applied.groups[0].canonical
    assert group.canonical in model.graph.initializers  # the name the plan gave it


def two_files(tmp_path):
    encoder = make(
        [h.make_node("Gather", ["emb", "ids"], ["e"]), h.make_node("MatMul", ["e", "B"], ["y"])],
        [("emb", W), ("B", B)],
        [vi("ids", ["b"], TensorProto.INT64)],
        [vi("y", ["b", H])],
    )
    decoder = make(
        [
            h.make_node("Constant", [], ["head"], value=nh.from_array(WT.copy(), "c")),
            h.make_node("Gather", ["tok", "ids"], ["e"]),
            h.make_node("MatMul", ["e", "head"], ["logits"]),
            h.make_node("MatMul", ["x16", "B16"], ["z"]),
        ],
        [("tok", W.copy()), ("B16", B.astype(np.float16))],
        [vi("ids", ["b"], TensorProto.INT64), vi("x16", ["b", H], TensorProto.FLOAT16)],
        [vi("logits", ["b", V]), vi("z", ["b", H], TensorProto.FLOAT16)],
    )
    paths = [tmp_path / "encoder.onnx", tmp_path / "decoder.onnx"]
    for path, proto in zip(paths, (encoder, decoder), strict=True):
        onnx.save(proto, path)
    return paths


def test_scan_of_several_files_is_the_plan_optimize_applies_each_model_analysed_once(
    tmp_path, monkeypatch
):
    paths = two_files(tmp_path)
    calls = []
    group_readers = planner_module.group_readers

    def counting(eligible, view_nodes, model_of=None):
        calls.append(len(eligible))
        return group_readers(eligible, view_nodes, model_of)

    monkeypatch.setattr(planner_module, "group_readers", counting)
    scanned = scan_files(paths, min_elements=MIN)
    out = tmp_path / "out"
    out.mkdir()
    result = optimize_files(paths, out, min_elements=MIN)
    assert calls == [5, 5]  # one grouping per run, of the five tensors of both models
    assert scanned.to_dict() == result.plan.to_dict()
    decoder = scanned.plans[1]
    assert {g.canonical: g.origin for g in decoder.groups} == {"tok": "", "B": "encoder.onnx"}
    assert decoder.freed_bytes == WT.nbytes + B.astype(np.float16).nbytes
    assert result.unique_bytes == W.nbytes + B.nbytes


class NegOfTransposeRule(rules.ConsumerRule):
    """A test rule: ``Neg(view(W))`` for a transposed view becomes ``Neg(Transpose(W))``."""

    name = "test-neg"
    view_parts = frozenset({"transpose"})

    def match(self, use):
        node = use.node
        if node.op_type != "Neg" or use.view.is_identity or use.rank != 2:
            return None
        return self.ok()

    def becomes(self, node):
        return "Neg"

    def cost(self, node, view):
        return 1

    def rewrite(self, node, index, canonical, view):
        transpose = ir.node("Transpose", [canonical], attributes={"perm": [1, 0]})
        node.graph.insert_before(node, transpose)
        node.replace_input_with(index, transpose.outputs[0])
        return True


def neg_model():
    return make(
        [
            h.make_node("Gather", ["emb", "ids"], ["e"]),
            h.make_node("Neg", ["emb"], ["m"]),
            h.make_node("Neg", ["embT"], ["n"]),
        ],
        [("emb", W), ("embT", WT.copy())],
        [vi("ids", ["b"], TensorProto.INT64)],
        [vi("e", ["b", H]), vi("m", [V, H]), vi("n", [H, V])],
    )


def test_a_rule_given_to_the_planner_is_planned_and_applied():
    proto = neg_model()
    model = ir.from_proto(proto)
    plan = plan_sharing(model, MIN, consumer_rules=[*rules.CONSUMER_RULES, NegOfTransposeRule()])
    ((consumer,),) = [m.consumers for g in plan.groups for m in g.members]
    assert (consumer.rule_name, consumer.becomes, consumer.rule.name) == (
        "test-neg",
        "Neg",
        "test-neg",
    )
    assert plan.freed_bytes == WT.nbytes
    assert ApplySharePlanPass(plan)(model).modified
    optimized = ir.to_proto(model)
    assert [i.name for i in optimized.graph.initializer] == ["emb"]
    feeds = {"ids": RNG.integers(0, V, size=3)}
    for a, b in zip(
        evaluator(proto).run(None, feeds), evaluator(optimized).run(None, feeds), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_without_the_rule_the_same_consumer_keeps_its_copy():
    plan = analyze(ir.from_proto(neg_model()), MIN)
    (member,) = plan.groups[0].members
    assert member.consumers[0].rule_name == ""
    assert "no ICL operator covers Neg" in member.kept_reason


class SecondMatMulRule(rules.ConsumerRule):
    """A test rule that claims what MatMulRule claims."""

    name = "test-second-matmul"

    def match(self, use):
        return self.ok() if use.node.op_type == "MatMul" and use.index == 1 else None

    def becomes(self, node):
        return "MatMul"

    def cost(self, node, view):
        return 0

    def rewrite(self, node, index, canonical, view):
        raise AssertionError("never applied")


def test_two_rules_claiming_one_use_is_an_error():
    node = ir.node("MatMul", [ir.Value(name="a"), ir.Value(name="w")])
    both = [*rules.CONSUMER_RULES, SecondMatMulRule()]
    with pytest.raises(RuntimeError, match="matmul, test-second-matmul"):
        rules.cover(rules.Use(node, 1, View(transpose=True), 2), both)


def test_share_weights_pass_is_lifting_then_sharing_and_keeps_no_plan():
    share = ShareWeightsPass(min_elements=MIN)
    assert isinstance(share, ir.passes.Sequential)
    assert [type(p).__name__ for p in share.passes] == [
        "LiftConstantsToInitializersPass",
        "PlanSharingPass",
        "ApplySharePlanPass",
    ]
    model = ir.from_proto(constant_model())
    assert share(model).modified
    assert not hasattr(share, "plan") and planned(model) is None
    assert sorted(model.graph.initializers) == ["emb"]


def test_a_model_shares_among_its_own_tensors_when_the_other_models_tensor_covers_less(tmp_path):
    # b holds W^T twice; a Neg reads one of them, and no rule lets a Neg read W^T through a
    # view of a's W, so b shares its two copies with each other and nothing with a.
    a = make(
        [h.make_node("MatMul", ["x", "w"], ["y"])],
        [("w", W)],
        [vi("x", ["n", V])],
        [vi("y", ["n", H])],
    )
    b = make(
        [h.make_node("MatMul", ["x", "wt"], ["y"]), h.make_node("Neg", ["wt2"], ["z"])],
        [("wt", WT.copy()), ("wt2", WT.copy())],
        [vi("x", ["n", H])],
        [vi("y", ["n", V]), vi("z", [H, V])],
    )
    paths = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    for path, proto in zip(paths, (a, b), strict=True):
        onnx.save(proto, path)
    scanned = scan_files(paths, min_elements=MIN)
    assert scanned.groups == [] and scanned.plans[0].groups == []
    (group,) = scanned.plans[1].groups
    assert (group.canonical, group.origin) == ("wt", "")
    assert [(m.name, m.view.kind, m.freed_bytes) for m in group.members] == [
        ("wt2", "exact", WT.nbytes)
    ]
    out = tmp_path / "out"
    out.mkdir()
    result = optimize_files(paths, out, min_elements=MIN)
    assert result.plan.to_dict() == scanned.to_dict()
    assert result.unique_bytes == W.nbytes + WT.nbytes


def test_a_copy_read_by_a_transpose_that_stays_is_reported_kept():
    plan = analyze(ir.from_proto(transpose_of_a_copy_model()), MIN)
    (group,) = plan.groups
    kept = {m.name: m.kept_reason for m in group.members}
    assert kept == {
        "copy": "read by Transpose(copyT), which stays",
        "copyT": "Neg input 0 reads it; no ICL operator covers Neg",
    }
    assert plan.freed_bytes == 0
