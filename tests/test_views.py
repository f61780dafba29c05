"""Slices, scaled copies and dtype-cast copies (and their transposes) on tiny inline models."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import icl_onnx
from icl_onnx.passes import ShareWeightsPass
from icl_onnx.planning import analyze
from icl_onnx.reference import evaluator

V, H = 64, 32
RNG = np.random.default_rng(1)
W = RNG.standard_normal((V, H)).astype(np.float32)
C = float(np.float32(0.37))
MIN_ELEMENTS = 16
F32, F16, BF16 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16

# name -> (member array, consumer op, input dtype, expected view kind, expected ICL attributes)
CASES = {
    "exact": (W.copy(), "MatMul", F32, "exact", {}),
    "transpose": (W.T.copy(), "MatMul", F32, "transpose", {"transpose": 1}),
    "scale": (np.float32(C) * W, "MatMul", F32, "scale", {"scale": C}),
    "scale-transpose": (
        np.float32(C) * W.T,
        "MatMul",
        F32,
        "transpose+scale",
        {"transpose": 1, "scale": C},
    ),
    "row-slice": (
        W[8:40].copy(),
        "MatMul",
        F32,
        "row-slice",
        {"slice_axis": 0, "slice_start": 8, "slice_size": 32},
    ),
    "col-slice": (
        W[:, 4:20].copy(),
        "MatMul",
        F32,
        "col-slice",
        {"slice_axis": 1, "slice_start": 4, "slice_size": 16},
    ),
    "row-slice-transpose": (
        W[8:24].T.copy(),
        "MatMul",
        F32,
        "row-slice+transpose",
        {"slice_axis": 0, "slice_start": 8, "slice_size": 16, "transpose": 1},
    ),
    "col-slice-transpose": (
        W[:, 3:11].T.copy(),
        "MatMul",
        F32,
        "col-slice+transpose",
        {"slice_axis": 1, "slice_start": 3, "slice_size": 8, "transpose": 1},
    ),
    "row-slice-gemm": (
        W[0:16].copy(),
        "Gemm",
        F32,
        "row-slice",
        {"slice_axis": 0, "slice_start": 0, "slice_size": 16, "transpose": 1},
    ),
    "fp16-cast": (W.astype(np.float16), "MatMul", F16, "cast", {}),
    "fp16-cast-transpose": (
        W.T.astype(np.float16),
        "MatMul",
        F16,
        "transpose+cast",
        {"transpose": 1},
    ),
    "row-slice-gather": (
        W[16:48].copy(),
        "Gather",
        F32,
        "row-slice",
        {"slice_axis": 0, "slice_start": 16, "slice_size": 32},
    ),
    "transposed-table-gather": (W.T.copy(), "Gather", F32, "transpose", {"transpose": 1}),
    "bf16-cast-gather": (
        W.astype(ml_dtypes.bfloat16),
        "Gather",
        BF16,
        "cast",
        {"output_dtype": BF16},
    ),
}


def view_model(member: np.ndarray, op: str, dtype: int) -> onnx.ModelProto:
    """``Gather(W, ids)`` keeps W; a second consumer reads ``member``, a view of W."""
    nodes = [h.make_node("Gather", ["W", "ids"], ["e"], name="embed")]
    inputs = [h.make_tensor_value_info("ids", TensorProto.INT64, ["b"])]
    outputs = [h.make_tensor_value_info("e", F32, ["b", H])]
    if op == "Gather":
        nodes.append(h.make_node("Gather", ["M", "ids2"], ["y"], name="consumer"))
        inputs.append(h.make_tensor_value_info("ids2", TensorProto.INT64, ["b"]))
    else:
        k = member.shape[1] if op == "Gemm" else member.shape[0]
        extra = {"transB": 1} if op == "Gemm" else {}
        nodes.append(h.make_node(op, ["x", "M"], ["y"], name="consumer", **extra))
        inputs.append(h.make_tensor_value_info("x", dtype, ["b", k]))
    outputs.append(h.make_tensor_value_info("y", dtype, ["b", "n"]))
    inits = [nh.from_array(W, "W"), _tensor(member, "M")]
    graph = h.make_graph(nodes, "views", inputs, outputs, inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])


def _tensor(array: np.ndarray, name: str) -> onnx.TensorProto:
    if array.dtype == ml_dtypes.bfloat16:
        return h.make_tensor(name, BF16, array.shape, array.view(np.uint16).tobytes(), raw=True)
    return nh.from_array(array, name)


def feeds_for(proto: onnx.ModelProto, member: np.ndarray) -> dict[str, np.ndarray]:
    feeds = {}
    for i in proto.graph.input:
        if i.name == "ids":
            feeds["ids"] = RNG.integers(0, V, size=5)
        elif i.name == "ids2":
            feeds["ids2"] = RNG.integers(0, member.shape[0], size=5)
        else:
            k = i.type.tensor_type.shape.dim[1].dim_value
            np_type = np.float16 if i.type.tensor_type.elem_type == F16 else np.float32
            feeds[i.name] = RNG.standard_normal((3, k)).astype(np_type)
    return feeds


def run_pass(proto: onnx.ModelProto):
    model = ir.from_proto(proto)
    result = ShareWeightsPass(min_elements=MIN_ELEMENTS)(model)
    optimized = ir.to_proto(model)
    onnx.checker.check_model(optimized, full_check=True)
    return result, optimized


def attributes(node: onnx.NodeProto) -> dict:
    return {a.name: h.get_attribute_value(a) for a in node.attribute}


@pytest.mark.parametrize("case", list(CASES))
def test_view_is_found_and_read_through_an_icl_op(case):
    member, op, dtype, kind, attrs = CASES[case]
    original = view_model(member, op, dtype)
    (group,) = analyze(ir.from_proto(original), min_elements=MIN_ELEMENTS).groups
    assert group.canonical == "W"
    (planned,) = group.members
    assert (planned.name, planned.view.kind, planned.freed_bytes) == ("M", kind, member.nbytes)

    result, optimized = run_pass(original)
    assert result.modified
    assert [i.name for i in optimized.graph.initializer] == ["W"]
    consumer = optimized.graph.node[1]
    expected_op = "IclGather" if op == "Gather" else "IclMatMul"
    assert (consumer.domain, consumer.op_type) == ("ai.icl", expected_op)
    assert "W" in consumer.input
    got = attributes(consumer)
    assert got.keys() == attrs.keys()
    for name, value in attrs.items():
        assert got[name] == pytest.approx(value, rel=1e-7)


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("bf16")])
def test_view_gives_the_original_numbers(case):
    member, op, dtype, _, _ = CASES[case]
    original = view_model(member, op, dtype)
    _, optimized = run_pass(original)
    feeds = feeds_for(original, member)
    want = evaluator(original).run(None, feeds)
    got = evaluator(optimized).run(None, feeds)
    # a cast view reads W in float32 and rounds once; the original read W rounded to float16
    tol = 2e-2 if dtype == F16 else 1e-5
    for a, b in zip(want, got, strict=True):
        assert b.dtype == a.dtype
        np.testing.assert_allclose(b.astype(np.float32), a.astype(np.float32), rtol=tol, atol=tol)


def test_bf16_cast_gather_returns_the_stored_bfloat16_rows():
    member, op, dtype, _, _ = CASES["bf16-cast-gather"]
    _, optimized = run_pass(view_model(member, op, dtype))
    ids = np.array([3, 0, 63, -1])
    (got,) = [
        o
        for n, o in zip(
            [o.name for o in optimized.graph.output],
            evaluator(optimized).run(None, {"ids": ids, "ids2": ids}),
            strict=True,
        )
        if n == "y"
    ]
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.view(np.uint16), member[ids].view(np.uint16))


@pytest.mark.parametrize(
    "near",
    [
        "scale",
        "row-slice",
        "fp16-cast",
    ],
)
def test_near_view_with_one_changed_element_is_not_shared(near):
    member, op, dtype, _, _ = CASES[near]
    member = member.copy()
    flat = member.reshape(-1)
    flat[7] = flat[7] + flat.dtype.type(0.25)
    plan = analyze(ir.from_proto(view_model(member, op, dtype)), min_elements=MIN_ELEMENTS)
    assert plan.groups == []


def test_scale_of_one_is_an_exact_copy_not_a_scale():
    plan = analyze(
        ir.from_proto(view_model(np.float32(1.0) * W, "MatMul", F32)), min_elements=MIN_ELEMENTS
    )
    assert plan.groups[0].members[0].view.kind == "exact"


def test_slice_of_a_cast_copy_composes_into_one_view():
    """M is a row slice of an fp16 copy of W: both M and the copy read W."""
    half = W.astype(np.float16)
    nodes = [
        h.make_node("Gather", ["W", "ids"], ["e"]),
        h.make_node("MatMul", ["x", "W16"], ["y1"]),
        h.make_node("MatMul", ["x2", "M"], ["y2"]),
    ]
    graph = h.make_graph(
        nodes,
        "chain",
        [
            h.make_tensor_value_info("ids", TensorProto.INT64, ["b"]),
            h.make_tensor_value_info("x", F16, ["b", V]),
            h.make_tensor_value_info("x2", F16, ["b", 16]),
        ],
        [
            h.make_tensor_value_info(n, t, ["b", "n"])
            for n, t in (("e", F32), ("y1", F16), ("y2", F16))
        ],
        [nh.from_array(W, "W"), nh.from_array(half, "W16"), nh.from_array(half[4:20], "M")],
    )
    original = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    (group,) = analyze(ir.from_proto(original), min_elements=MIN_ELEMENTS).groups
    kinds = {m.name: m.view for m in group.members}
    assert kinds["W16"].kind == "cast"
    assert kinds["M"].kind == "row-slice+cast" and kinds["M"].slice_start == 4
    _, optimized = run_pass(original)
    assert [i.name for i in optimized.graph.initializer] == ["W"]


@pytest.mark.usefixtures("icl_library")
@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("bf16")])
def test_view_in_ort_matches_the_original_model(case):
    import onnxruntime as ort

    member, op, dtype, _, _ = CASES[case]
    original = view_model(member, op, dtype)
    _, optimized = run_pass(original)
    feeds = feeds_for(original, member)
    plain = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    icl = icl_onnx.create_session(optimized.SerializeToString())
    tol = 2e-2 if dtype == F16 else 1e-5
    for a, b in zip(plain.run(None, feeds), icl.run(None, feeds), strict=True):
        np.testing.assert_allclose(b.astype(np.float32), a.astype(np.float32), rtol=tol, atol=tol)
