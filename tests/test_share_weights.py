"""ShareWeightsPass on tiny inline models: structure, the plan, and numbers."""

from __future__ import annotations

import builders
import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import icl_onnx
from icl_onnx.analysis import readers
from icl_onnx.analysis.probes import positions
from icl_onnx.passes import ShareWeightsPass
from icl_onnx.planning import analyze
from icl_onnx.reference import evaluator

V, H = 64, 32
RNG = np.random.default_rng(0)
W = RNG.standard_normal((V, H)).astype(np.float32)
MIN_ELEMENTS = 16  # the tiny tensors here are below the default threshold


def make_model(nodes, inits, inputs, outputs, opset=18):
    graph = h.make_graph(nodes, "g", inputs, outputs, [nh.from_array(a, n) for n, a in inits])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])


def ids_input():
    return h.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])


def x_input(k=H):
    return h.make_tensor_value_info("x", TensorProto.FLOAT, ["b", k])


def out(name="y", rank=3):
    return h.make_tensor_value_info(name, TensorProto.FLOAT, [f"{name}{i}" for i in range(rank)])


def tied_model(dynamo: bool):
    """Gather(W) feeding a MatMul with W^T: a transposed copy, or Transpose(W)."""
    return builders.tied_model(transpose_node=dynamo)


def run_pass(proto):
    model = ir.from_proto(proto)
    result = ShareWeightsPass(min_elements=MIN_ELEMENTS)(model)
    optimized = ir.to_proto(model)
    onnx.checker.check_model(optimized, full_check=True)
    return result, optimized, model


def feeds_for(proto):
    feeds = {}
    for i in proto.graph.input:
        if i.type.tensor_type.elem_type == TensorProto.INT64:
            feeds[i.name] = RNG.integers(0, V, size=(2, 5))
        else:
            feeds[i.name] = RNG.standard_normal((3, H)).astype(np.float32)
    return feeds


def assert_same_outputs(original, optimized):
    feeds = feeds_for(original)
    want = evaluator(original).run(None, feeds)
    got = evaluator(optimized).run(None, feeds)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def initializer_names(proto):
    return sorted(i.name for i in proto.graph.initializer)


def ops(proto):
    return [(n.domain, n.op_type) for n in proto.graph.node]


@pytest.mark.parametrize("dynamo", [False, True], ids=["transposed-copy", "transpose-node"])
def test_tied_embedding_reads_one_weight_through_icl_matmul(dynamo):
    original = tied_model(dynamo)
    result, optimized, model = run_pass(original)
    assert result.modified
    assert initializer_names(optimized) == ["emb"]
    assert ops(optimized) == [("", "Gather"), ("ai.icl", "IclMatMul")]
    matmul = optimized.graph.node[1]
    assert list(matmul.input) == ["e", "emb"]
    assert {a.name: h.get_attribute_value(a) for a in matmul.attribute} == {"transpose": 1}
    assert any(o.domain == "ai.icl" for o in optimized.opset_import)
    assert_same_outputs(original, optimized)


def test_transposed_copy_plan_reports_the_bytes_freed():
    plan = analyze(ir.from_proto(tied_model(dynamo=False)))
    (group,) = plan.groups
    assert group.canonical == "emb"
    (member,) = group.members
    assert (member.name, member.view.kind, member.freed_bytes) == ("embT", "transpose", W.nbytes)
    assert (member.consumers[0].rule_name, member.consumers[0].becomes) == ("matmul", "IclMatMul")
    assert plan.freed_bytes == W.nbytes


def test_exact_copy_feeding_two_matmuls_is_shared():
    original = make_model(
        [
            h.make_node("MatMul", ["x", "w1"], ["a"]),
            h.make_node("MatMul", ["x", "w2"], ["b"]),
            h.make_node("Add", ["a", "b"], ["y"]),
        ],
        [("w1", W.T.copy()), ("w2", W.T.copy())],
        [x_input()],
        [out(rank=2)],
    )
    result, optimized, _ = run_pass(original)
    assert result.modified
    assert initializer_names(optimized) == ["w1"]
    # Both MatMuls read the one copy through IclMatMul, so ORT prepacks no second copy.
    assert [n.op_type for n in optimized.graph.node[:2]] == ["IclMatMul", "IclMatMul"]
    assert all(n.input[1] == "w1" for n in optimized.graph.node[:2])
    assert_same_outputs(original, optimized)


def test_exact_copy_feeding_other_ops_is_rewired():
    original = make_model(
        [h.make_node("Add", ["x", "c1"], ["a"]), h.make_node("Mul", ["a", "c2"], ["y"])],
        [("c1", W[:3].copy()), ("c2", W[:3].copy())],
        [h.make_tensor_value_info("x", TensorProto.FLOAT, [3, H])],
        [out(rank=2)],
    )
    _, optimized, _ = run_pass(original)
    assert initializer_names(optimized) == ["c1"]
    assert [list(n.input) for n in optimized.graph.node] == [["x", "c1"], ["a", "c1"]]
    assert_same_outputs(original, optimized)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_reading_a_transposed_copy_becomes_icl_matmul(trans_b):
    # Gemm computes x @ B (trans_b=0) or x @ B^T (trans_b=1); B is a view of emb.
    b = W.T.copy() if trans_b == 0 else W.copy()
    bias = RNG.standard_normal(V).astype(np.float32)
    original = make_model(
        [
            h.make_node("Gather", ["emb", "ids"], ["e"]),
            h.make_node("Gemm", ["x", "b", "bias"], ["g"], transB=trans_b, alpha=0.5),
            h.make_node("ReduceSum", ["e"], ["y"], keepdims=0),
        ],
        [("emb", W), ("b", b), ("bias", bias)]
        if trans_b == 0
        else [("emb", W), ("b2", b), ("bias", bias)],
        [ids_input(), x_input()],
        [out(rank=0), out("g", rank=2)],
    )
    if trans_b == 1:  # an exact copy of emb read by Gemm(transB=1)
        original.graph.node[1].input[1] = "b2"
    result, optimized, _ = run_pass(original)
    assert result.modified
    assert "b" not in initializer_names(optimized) and "b2" not in initializer_names(optimized)
    gemm = next(n for n in optimized.graph.node if n.op_type == "IclMatMul")
    attrs = {a.name: h.get_attribute_value(a) for a in gemm.attribute}
    assert attrs == {"transpose": 1, "scale": 0.5}
    assert list(gemm.input) == ["x", "emb", "bias"]
    assert_same_outputs(original, optimized)


def test_transposed_copy_feeding_gather_keeps_the_gather_plain():
    # The MatMul's weight is stored first; the canonical is still the Gather's table, so the
    # Gather stays a plain Gather and only the MatMul reads a transposed view.
    original = make_model(
        [h.make_node("MatMul", ["x", "wT"], ["y"]), h.make_node("Gather", ["w", "ids"], ["e"])],
        [("wT", W.T.copy()), ("w", W)],
        [x_input(), ids_input()],
        [out(rank=2), out("e")],
    )
    _, optimized, _ = run_pass(original)
    assert initializer_names(optimized) == ["w"]
    assert ops(optimized) == [("ai.icl", "IclMatMul"), ("", "Gather")]
    assert_same_outputs(original, optimized)


def test_transposed_copy_read_only_by_gather_uses_icl_gather():
    original = make_model(
        [h.make_node("Gather", ["w", "ids"], ["a"]), h.make_node("Gather", ["wT", "ids2"], ["b"])],
        [("w", W), ("wT", W.T.copy())],
        [ids_input(), h.make_tensor_value_info("ids2", TensorProto.INT64, ["b", "s"])],
        [out("a"), out("b")],
    )
    _, optimized, _ = run_pass(original)
    assert initializer_names(optimized) == ["w"]
    gather = optimized.graph.node[1]
    assert (gather.domain, gather.op_type, list(gather.input)) == (
        "ai.icl",
        "IclGather",
        ["w", "ids2"],
    )
    feeds = {"ids": RNG.integers(0, V, (2, 3)), "ids2": RNG.integers(0, H, (2, 3))}
    for a, b in zip(
        evaluator(original).run(None, feeds), evaluator(optimized).run(None, feeds), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_overridable_initializer_is_left_alone():
    proto = tied_model(dynamo=False)
    proto.graph.input.append(h.make_tensor_value_info("embT", TensorProto.FLOAT, [H, V]))
    result, optimized, _ = run_pass(proto)
    assert not result.modified
    assert initializer_names(optimized) == ["emb", "embT"]
    plan = analyze(ir.from_proto(proto), min_elements=MIN_ELEMENTS)
    assert plan.groups == []
    assert [(s.name, "graph input" in s.reason) for s in plan.skipped] == [("embT", True)]


def test_graph_output_initializer_is_left_alone():
    proto = tied_model(dynamo=False)
    proto.graph.output.append(h.make_tensor_value_info("embT", TensorProto.FLOAT, [H, V]))
    result, optimized, _ = run_pass(proto)
    assert not result.modified
    assert initializer_names(optimized) == ["emb", "embT"]


def test_uncovered_consumer_keeps_its_copy_and_says_why():
    # Each copy has a consumer no ICL op covers (Neg), so whichever is canonical, the other stays.
    proto = make_model(
        [
            h.make_node("Gather", ["emb", "ids"], ["e"]),
            h.make_node("Neg", ["emb"], ["n1"]),
            h.make_node("MatMul", ["e", "embT"], ["y"]),
            h.make_node("Neg", ["embT"], ["n2"]),
        ],
        [("emb", W), ("embT", W.T.copy())],
        [ids_input()],
        [out(), out("n1", rank=2), out("n2", rank=2)],
    )
    plan = analyze(ir.from_proto(proto), min_elements=MIN_ELEMENTS)
    (member,) = plan.groups[0].members
    assert member.freed_bytes == 0
    assert "Neg" in member.kept_reason
    result, optimized, _ = run_pass(proto)
    assert result.modified
    assert initializer_names(optimized) == ["emb", "embT"]
    assert ("ai.icl", "IclMatMul") in ops(optimized)  # the covered consumer still shares
    assert_same_outputs(proto, optimized)


def test_canonical_is_chosen_so_that_uncovered_consumers_keep_plain_reads():
    # embT has a consumer no ICL op covers, so embT is canonical and emb (read by Gather) goes.
    proto = make_model(
        [
            h.make_node("Gather", ["emb", "ids"], ["e"]),
            h.make_node("MatMul", ["e", "embT"], ["y"]),
            h.make_node("Neg", ["embT"], ["z"]),
        ],
        [("emb", W), ("embT", W.T.copy())],
        [ids_input()],
        [out(), out("z", rank=2)],
    )
    result, optimized, _ = run_pass(proto)
    assert result.modified
    assert initializer_names(optimized) == ["embT"]
    gather = optimized.graph.node[0]
    assert (gather.op_type, list(gather.input)) == ("IclGather", ["embT", "ids"])
    assert_same_outputs(proto, optimized)


def test_model_with_nothing_to_share_is_unchanged():
    proto = make_model(
        [h.make_node("MatMul", ["x", "w"], ["a"]), h.make_node("Gather", ["t", "ids"], ["y"])],
        [("w", W.T.copy()), ("t", RNG.standard_normal((V, H)).astype(np.float32))],
        [x_input(), ids_input()],
        [out("a", rank=2), out()],
    )
    before = proto.SerializeToString()
    result, optimized, _ = run_pass(proto)
    assert not result.modified
    assert ops(optimized) == ops(proto) and initializer_names(optimized) == ["t", "w"]
    assert proto.SerializeToString() == before
    assert_same_outputs(proto, optimized)


def test_large_constant_node_takes_part():
    proto = tied_model(dynamo=False)
    del proto.graph.initializer[1]
    const = h.make_node("Constant", [], ["embT"], value=nh.from_array(W.T.copy(), "c"))
    proto.graph.node.insert(0, const)
    model = ir.from_proto(proto)
    plan = icl_onnx.optimize(model, min_elements=MIN_ELEMENTS)
    assert plan.freed_bytes == W.nbytes
    optimized = ir.to_proto(model)
    assert initializer_names(optimized) == ["emb"]
    assert [n.op_type for n in optimized.graph.node] == ["Gather", "IclMatMul"]


def test_second_run_changes_nothing():
    model = ir.from_proto(tied_model(dynamo=True))
    assert ShareWeightsPass(min_elements=MIN_ELEMENTS)(model).modified
    first = ir.to_proto(model).SerializeToString()
    assert not ShareWeightsPass(min_elements=MIN_ELEMENTS)(model).modified
    assert ir.to_proto(model).SerializeToString() == first


def test_near_copy_is_not_shared():
    other = W.T.copy()
    other[3, 5] += 1e-3  # same multiset fingerprint? No: verification must reject it anyway
    proto = make_model(
        [h.make_node("Gather", ["emb", "ids"], ["e"]), h.make_node("MatMul", ["e", "embT"], ["y"])],
        [("emb", W), ("embT", other)],
        [ids_input()],
        [out()],
    )
    result, _, _ = run_pass(proto)
    assert not result.modified


def permuted_transposed_copy() -> np.ndarray:
    """``W^T`` with two elements swapped where the analysis samples neither.

    Its samples are those of ``W^T`` and its values the same multiset, so the analysis
    nominates it as a transposed copy of ``W`` and only verification on all the values can
    tell it apart.
    """
    permuted = np.ascontiguousarray(W.T)
    sampled = set(zip(*(axis.tolist() for axis in positions(permuted.shape)), strict=True))
    unsampled = [p for p in np.ndindex(permuted.shape) if p not in sampled]
    first, second = unsampled[0], unsampled[-1]
    assert permuted[first] != permuted[second]
    permuted[first], permuted[second] = permuted[second], permuted[first]
    return permuted


def test_permuted_copy_with_equal_samples_is_rejected_by_verification():
    proto = tied_model(dynamo=False)
    proto.graph.initializer[1].CopyFrom(nh.from_array(permuted_transposed_copy(), "embT"))
    result, _, _ = run_pass(proto)
    assert not result.modified


def test_permuted_copy_would_be_shared_were_verification_to_accept_it(monkeypatch):
    # Shows the test above is decided by verification: the samples do not tell the tensors apart.
    monkeypatch.setattr(readers, "is_transposed_copy", lambda a, b: True)
    proto = tied_model(dynamo=False)
    proto.graph.initializer[1].CopyFrom(nh.from_array(permuted_transposed_copy(), "embT"))
    result, _, _ = run_pass(proto)
    assert result.modified


@pytest.mark.usefixtures("icl_library")
def test_icl_gather_output_is_typed_so_ort_loads_the_model():
    # No value_info for the intermediate "e": ORT cannot infer a custom op's output type when it
    # differs from its inputs' constraints, so the pass must declare it.
    proto = make_model(
        [
            h.make_node("Gather", ["wT", "ids"], ["e"]),
            h.make_node("Neg", ["w"], ["n"]),
            h.make_node("ReduceSum", ["e"], ["y"], keepdims=0),
        ],
        [("w", W), ("wT", W.T.copy())],
        [ids_input()],
        [out("y", rank=0), out("n", rank=2)],
    )
    _, optimized, _ = run_pass(proto)
    assert [n.op_type for n in optimized.graph.node][0] == "IclGather"
    session = icl_onnx.create_session(optimized.SerializeToString())
    ids = RNG.integers(0, H, (2, 3))
    (got, _) = session.run(None, {"ids": ids})
    np.testing.assert_allclose(got, W.T[ids].sum(), rtol=1e-4)
