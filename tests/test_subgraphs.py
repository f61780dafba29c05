"""Sharing across graph levels: If branches, Loop and Scan bodies, and ONNX functions.

A subgraph may read its enclosing graphs' values, never a sibling's; the canonical tensor must
live in a graph that encloses all its readers. Each model is built inline, optimized, checked
with the full ONNX checker, and run in ONNX Runtime (with the ICL op library) against the
original.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from builders import IR_VERSION
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import icl_onnx
from icl_onnx.pipeline import optimize_file
from icl_onnx.planning import analyze

V, H, B, S = 64, 32, 3, 5
RNG = np.random.default_rng(0)
W = RNG.standard_normal((V, H)).astype(np.float32)
WT = np.ascontiguousarray(W.T)
MIN = 16
OPSET = 18

needs_ops = pytest.mark.usefixtures("icl_library")


def vi(name, shape, dtype=TensorProto.FLOAT):
    return h.make_tensor_value_info(name, dtype, shape)


def graph(name, nodes, inputs, outputs, inits=()):
    return h.make_graph(nodes, name, inputs, outputs, [nh.from_array(a, n) for n, a in inits])


def model(main, functions=(), extra_opsets=()):
    opsets = [h.make_opsetid("", OPSET), *(h.make_opsetid(d, v) for d, v in extra_opsets)]
    proto = h.make_model(main, opset_imports=opsets, functions=list(functions))
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto, full_check=True)
    return proto


def feeds(**extra):
    out = {
        "x": RNG.standard_normal((B, H)).astype(np.float32),
        "ids": RNG.integers(0, V, size=(S,)),
    }
    out.update(extra)
    return out


def optimize(proto):
    """Runs the optimize pipeline; returns the plan, the IR model and the checked proto."""
    m = ir.from_proto(copy.deepcopy(proto))  # the IR shares tensors with the proto it reads
    plan = icl_onnx.optimize(m, MIN)
    optimized = ir.to_proto(m)
    onnx.checker.check_model(optimized, full_check=True)
    return plan, m, optimized


def subgraphs(m: ir.Model) -> dict[str, ir.Graph]:
    return {g.name: g for g in m.graphs()}


def initializers(m: ir.Model) -> dict[str, list[str]]:
    """Graph name -> its initializer names."""
    return {g.name: sorted(g.initializers) for g in m.graphs()}


def ops(g: ir.Graph) -> list[str]:
    return [n.op_type for n in g]


def only(g: ir.Graph, op_type: str) -> ir.Node:
    (node,) = [n for n in g if n.op_type == op_type]
    return node


def assert_same_outputs(original, optimized, feed_list):
    """The optimized model computes what the original does, in ORT with the ICL library."""
    want = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    got = icl_onnx.create_session(optimized.SerializeToString())
    names = {i.name for i in want.get_inputs()}
    for f in feed_list:
        f = {k: v for k, v in f.items() if k in names}
        for a, b in zip(want.run(None, f), got.run(None, f), strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


# --- models --------------------------------------------------------------------------------------


def gather_and_if(then, inputs, y_shape):
    """Gather(w) in the main graph and If(c): ``then``, or an else branch with an exact copy."""
    other = graph(
        "else",
        [h.make_node("Gather", ["w_else", "ids"], ["y_else"])],
        [],
        [vi("y_else", [S, H])],
        [("w_else", W.copy())],
    )
    main = graph(
        "main",
        [
            h.make_node("Gather", ["w", "ids"], ["e"]),
            h.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other),
        ],
        [vi("c", [], TensorProto.BOOL), *inputs, vi("ids", [S], TensorProto.INT64)],
        [vi("e", [S, H]), vi("y", y_shape)],
        [("w", W)],
    )
    return model(main)


def if_model():
    """Gather(w) in the main graph; one branch reads a transposed copy, the other an exact copy."""
    then = graph(
        "then",
        [h.make_node("MatMul", ["x", "w_then"], ["y_then"])],
        [],
        [vi("y_then", [B, V])],
        [("w_then", WT)],
    )
    return gather_and_if(then, [vi("x", [B, H])], ["r", "k"])


def sibling_model(clash: bool):
    """Each branch holds a private copy of W^T; nothing outside holds one.

    With ``clash``, each branch has a local value named like the other branch's copy, so the
    lifted tensor must be renamed to stay visible by name.
    """

    def branch(name, other):
        first = [h.make_node("Identity", ["x"], [f"w_{other}"])] if clash else []
        a = f"w_{other}" if clash else "x"
        nodes = [*first, h.make_node("MatMul", [a, f"w_{name}"], [f"y_{name}"])]
        return graph(name, nodes, [], [vi(f"y_{name}", [B, V])], [(f"w_{name}", WT.copy())])

    main = graph(
        "main",
        [
            h.make_node(
                "If",
                ["c"],
                ["y"],
                then_branch=branch("then", "else"),
                else_branch=branch("else", "then"),
            )
        ],
        [vi("c", [], TensorProto.BOOL), vi("x", [B, H])],
        [vi("y", [B, V])],
    )
    return model(main)


def loop_body(*nodes):
    """A Loop body: ``nodes`` compute ``yb`` from ``xc``; ``cond`` and ``xc`` pass through."""
    return graph(
        "body",
        [
            *nodes,
            h.make_node("Identity", ["cond"], ["cond_out"]),
            h.make_node("Identity", ["xc"], ["xc_out"]),
        ],
        [vi("i", [], TensorProto.INT64), vi("cond", [], TensorProto.BOOL), vi("xc", [B, H])],
        [vi("cond_out", [], TensorProto.BOOL), vi("xc_out", [B, H]), vi("yb", [B, V])],
    )


def nested_model():
    """A Loop body holds an If whose branches each hold a private copy of W^T."""

    def branch(name):
        nodes = [h.make_node("MatMul", ["xc", f"w_{name}"], [f"y_{name}"])]
        return graph(name, nodes, [], [vi(f"y_{name}", [B, V])], [(f"w_{name}", WT.copy())])

    body = loop_body(
        h.make_node("If", ["c"], ["yb"], then_branch=branch("then"), else_branch=branch("else"))
    )
    main = graph(
        "main",
        [h.make_node("Loop", ["n", "", "x"], ["xf", "ys"], body=body)],
        [vi("n", [], TensorProto.INT64), vi("c", [], TensorProto.BOOL), vi("x", [B, H])],
        [vi("xf", [B, H]), vi("ys", ["k", B, V])],
    )
    return model(main)


def loop_model():
    """A Loop body whose Constant node holds a transposed copy of the main graph's W."""
    constant = h.make_node("Constant", [], ["wc"], value=nh.from_array(WT, "wc"))
    body = loop_body(constant, h.make_node("MatMul", ["xc", "wc"], ["yb"]))
    main = graph(
        "main",
        [
            h.make_node("Gather", ["w", "ids"], ["e"]),
            h.make_node("Loop", ["n", "", "x"], ["xf", "ys"], body=body),
        ],
        [vi("n", [], TensorProto.INT64), vi("x", [B, H]), vi("ids", [S], TensorProto.INT64)],
        [vi("e", [S, H]), vi("xf", [B, H]), vi("ys", ["k", B, V])],
        [("w", W)],
    )
    return model(main)


def scan_model(kind: str):
    """A Scan body multiplies each step by W^T: a body initializer, or Transpose of outer W."""
    if kind == "transposed initializer":
        nodes, inits = [], [("wt", WT.copy())]
    else:
        nodes, inits = [h.make_node("Transpose", ["w"], ["wt"], perm=[1, 0])], []
    body = graph(
        "body",
        [*nodes, h.make_node("MatMul", ["xt", "wt"], ["yt"])],
        [vi("xt", [B, H])],
        [vi("yt", [B, V])],
        inits,
    )
    main = graph(
        "main",
        [
            h.make_node("Gather", ["w", "ids"], ["e"]),
            h.make_node("Scan", ["xs"], ["ys"], body=body, num_scan_inputs=1),
        ],
        [vi("xs", [S, B, H]), vi("ids", [S], TensorProto.INT64)],
        [vi("e", [S, H]), vi("ys", [S, B, V])],
        [("w", W)],
    )
    return model(main)


def function_model():
    """A local function holds W^T in a Constant node; the main graph holds W."""
    head = h.make_function(
        "local",
        "Head",
        ["a"],
        ["b"],
        [
            h.make_node("Constant", [], ["wc"], value=nh.from_array(WT, "wc")),
            h.make_node("MatMul", ["a", "wc"], ["b"]),
        ],
        opset_imports=[h.make_opsetid("", OPSET)],
    )
    main = graph(
        "main",
        [
            h.make_node("Gather", ["w", "ids"], ["e"]),
            h.make_node("Head", ["x"], ["y"], domain="local"),
        ],
        [vi("x", [B, H]), vi("ids", [S], TensorProto.INT64)],
        [vi("e", [S, H]), vi("y", [B, V])],
        [("w", W)],
    )
    return model(main, functions=[head], extra_opsets=[("local", 1)])


# --- tests ---------------------------------------------------------------------------------------


@needs_ops
def test_copies_in_both_if_branches_are_shared_with_the_main_weight():
    original = if_model()
    plan, m, optimized = optimize(original)
    assert initializers(m) == {"main": ["w"], "then": [], "else": []}
    (group,) = plan.groups
    assert group.canonical == "w"
    assert sorted(member.name for member in group.members) == ["w_else", "w_then"]
    g = subgraphs(m)
    w = m.graph.initializers["w"]
    matmul = only(g["then"], "IclMatMul")
    assert matmul.inputs[1] is w
    assert matmul.attributes["transpose"].value == 1
    assert ops(g["else"]) == ["Gather"]
    assert g["else"].node(0).inputs[0] is w
    assert_same_outputs(original, optimized, [feeds(c=np.array(c)) for c in (True, False)])


@needs_ops
@pytest.mark.parametrize("clash", [False, True], ids=["unique-names", "clashing-names"])
def test_private_copies_in_sibling_branches_are_lifted_to_the_main_graph(clash):
    original = sibling_model(clash)
    plan, m, optimized = optimize(original)
    g = subgraphs(m)
    (name,) = m.graph.initializers
    assert initializers(m) == {"main": [name], "then": [], "else": []}
    assert plan.groups[0].canonical == name
    shared = m.graph.initializers[name]
    for branch in ("then", "else"):
        assert only(g[branch], "IclMatMul").inputs[1] is shared
    branch_names = {v.name for b in ("then", "else") for n in g[b] for v in n.outputs}
    assert name not in branch_names  # an outer name no branch shadows
    if clash:
        assert name in ("w_then_1", "w_else_1")
    else:
        assert name in ("w_then", "w_else")
    np.testing.assert_array_equal(shared.const_value.numpy(), WT)
    assert_same_outputs(original, optimized, [feeds(c=np.array(c)) for c in (True, False)])


@needs_ops
def test_private_copies_in_nested_branches_move_to_the_innermost_common_graph():
    original = nested_model()
    plan, m, optimized = optimize(original)
    g = subgraphs(m)
    (name,) = g["body"].initializers
    assert initializers(m) == {"main": [], "body": [name], "then": [], "else": []}
    assert plan.groups[0].canonical == name
    shared = g["body"].initializers[name]
    for branch in ("then", "else"):
        assert only(g[branch], "IclMatMul").inputs[1] is shared
    np.testing.assert_array_equal(shared.const_value.numpy(), WT)
    feed_list = [feeds(n=np.array(2), c=np.array(c)) for c in (True, False)]
    assert_same_outputs(original, optimized, feed_list)


@needs_ops
def test_loop_body_constant_copying_an_outer_weight_is_shared():
    original = loop_model()
    plan, m, optimized = optimize(original)
    body = subgraphs(m)["body"]
    assert initializers(m) == {"main": ["w"], "body": []}
    assert "Constant" not in ops(body)
    matmul = only(body, "IclMatMul")
    assert matmul.inputs[1] is m.graph.initializers["w"]
    assert matmul.attributes["transpose"].value == 1
    (group,) = plan.groups
    assert [member.name for member in group.members] == ["wc"]
    assert_same_outputs(original, optimized, [feeds(n=np.array(k)) for k in (1, 3)])


@needs_ops
@pytest.mark.parametrize("kind", ["transposed initializer", "Transpose node"])
def test_transposed_copy_in_a_scan_body_becomes_icl_matmul_on_the_outer_tensor(kind):
    original = scan_model(kind)
    _, m, optimized = optimize(original)
    body = subgraphs(m)["body"]
    assert initializers(m) == {"main": ["w"], "body": []}
    assert ops(body) == ["IclMatMul"]
    matmul = body.node(0)
    assert matmul.inputs[1] is m.graph.initializers["w"]
    assert matmul.attributes["transpose"].value == 1
    assert ops(m.graph) == ["Gather", "Scan"]
    xs = RNG.standard_normal((S, B, H)).astype(np.float32)
    assert_same_outputs(original, optimized, [{"xs": xs, "ids": feeds()["ids"]}])


def test_subgraph_initializer_that_is_also_its_input_is_not_merged():
    # ONNX and ORT reject such a Loop body, so nothing here runs; the pass must not touch it.
    body = graph(
        "body",
        [
            h.make_node("Identity", ["cond"], ["cond_out"]),
            h.make_node("Identity", ["v"], ["v_out"]),
            h.make_node("Gather", ["v", "ids"], ["e"]),
        ],
        [vi("i", [], TensorProto.INT64), vi("cond", [], TensorProto.BOOL), vi("v", [V, H])],
        [vi("cond_out", [], TensorProto.BOOL), vi("v_out", [V, H]), vi("e", [S, H])],
        [("v", W.copy())],
    )
    main = graph(
        "main",
        [
            h.make_node("Gather", ["w", "ids"], ["e0"]),
            h.make_node("Gather", ["w2", "ids"], ["e1"]),
            h.make_node("Loop", ["n", "", "v0"], ["vf", "es"], body=body),
        ],
        [vi("n", [], TensorProto.INT64), vi("ids", [S], TensorProto.INT64), vi("v0", [V, H])],
        [vi("e0", [S, H]), vi("e1", [S, H]), vi("es", ["k", S, H])],
        [("w", W), ("w2", W.copy())],
    )
    proto = h.make_model(main, opset_imports=[h.make_opsetid("", OPSET)])
    m = ir.from_proto(proto)
    plan = icl_onnx.optimize(m, MIN)
    assert ("v", "input of subgraph body") in [(s.name, s.reason) for s in plan.skipped]
    (group,) = plan.groups
    assert [member.name for member in group.members] == ["w2"]
    assert initializers(m) == {"main": ["w"], "body": ["v"]}
    body_ir = subgraphs(m)["body"]
    v = body_ir.initializers["v"]
    assert v in body_ir.inputs
    assert [n.inputs[0] for n in body_ir if n.op_type == "Gather"] == [v]
    np.testing.assert_array_equal(v.const_value.numpy(), W)
    w = m.graph.initializers["w"]
    assert [n.inputs[0] for n in m.graph if n.op_type == "Gather"] == [w, w]


@needs_ops
def test_if_branch_returning_its_initializer_keeps_it():
    then = graph("then", [], [], [vi("w_then", [V, H])], [("w_then", W.copy())])
    original = gather_and_if(then, [], ["r", H])
    plan, m, optimized = optimize(original)
    assert ("w_then", "output of subgraph then") in [(s.name, s.reason) for s in plan.skipped]
    assert initializers(m) == {"main": ["w"], "then": ["w_then"], "else": []}
    assert subgraphs(m)["else"].node(0).inputs[0] is m.graph.initializers["w"]
    assert_same_outputs(original, optimized, [feeds(c=np.array(c)) for c in (True, False)])


@needs_ops
def test_function_constant_stays_and_the_model_stays_valid():
    original = function_model()
    plan, m, optimized = optimize(original)
    assert plan.groups == []
    (skipped,) = [s for s in plan.skipped if s.name == "wc"]
    assert "function Head" in skipped.reason
    (function,) = m.functions.values()
    assert [n.op_type for n in function] == ["Constant", "MatMul"]
    np.testing.assert_array_equal(function[0].attributes["value"].value.numpy(), WT)
    assert initializers(m) == {"main": ["w"]}
    assert [(f.domain, f.name) for f in optimized.functions] == [("local", "Head")]
    assert_same_outputs(original, optimized, [feeds()])


def test_analysis_reports_subgraph_members_without_changing_the_model():
    proto = if_model()
    m = ir.from_proto(proto)
    plan = analyze(m, MIN)
    assert [(g.canonical, sorted(x.name for x in g.members)) for g in plan.groups] == [
        ("w", ["w_else", "w_then"])
    ]
    assert plan.initializer_count == 3
    unchanged = ir.to_proto(ir.from_proto(proto)).SerializeToString()
    assert ir.to_proto(m).SerializeToString() == unchanged


BUILDERS = {
    "if": if_model,
    "siblings": lambda: sibling_model(clash=True),
    "nested": nested_model,
    "loop": loop_model,
    "scan-initializer": lambda: scan_model("transposed initializer"),
    "scan-transpose": lambda: scan_model("Transpose node"),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_a_second_optimize_changes_nothing_and_versions_are_kept(tmp_path, name):
    original = BUILDERS[name]()
    src, once, twice = tmp_path / "m.onnx", tmp_path / "once.onnx", tmp_path / "twice.onnx"
    onnx.save(original, src)
    first = optimize_file(src, once, min_elements=MIN)
    second = optimize_file(once, twice, min_elements=MIN)
    assert first.modified and first.plan.groups
    assert not second.modified
    assert second.plan.groups == []
    assert once.read_bytes() == twice.read_bytes()
    a, b = onnx.load(once), onnx.load(twice)
    assert a.SerializeToString() == b.SerializeToString()
    onnx.checker.check_model(str(twice), full_check=True)
    assert b.ir_version == IR_VERSION
    assert {o.domain: o.version for o in b.opset_import} == {"": OPSET, "ai.icl": 1}


def test_a_model_with_a_function_keeps_its_versions_and_bytes(tmp_path):
    original = function_model()
    src, once = tmp_path / "m.onnx", tmp_path / "once.onnx"
    onnx.save(original, src)
    result = optimize_file(src, once, min_elements=MIN)
    assert not result.modified
    out = onnx.load(once)
    assert out.ir_version == IR_VERSION
    assert {o.domain: o.version for o in out.opset_import} == {"": OPSET, "local": 1}
    assert out.functions[0].SerializeToString() == original.functions[0].SerializeToString()
