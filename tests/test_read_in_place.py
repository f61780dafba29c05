"""ReadWeightsInPlacePass (``optimize --read-weights-in-place``) and the shared-session warning."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh
from test_external_data import added_memory, matmul_proto

from icl_onnx import create_session
from icl_onnx._packed_weights import packed_weights
from icl_onnx._runtime import _PACKED_MIN_ELEMENTS
from icl_onnx.analysis.readers import DEFAULT_MIN_ELEMENTS
from icl_onnx.cli.main import main
from icl_onnx.model_io import save_model
from icl_onnx.ops import DOMAIN, MATMUL
from icl_onnx.passes import ReadWeightsInPlacePass
from icl_onnx.pipeline import optimize_file

RNG = np.random.default_rng(0)
F = TensorProto.FLOAT


def _mixed_model() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """MatMul/Gemm weights of every kind the pass must tell apart, and the feeds."""
    w = {
        "W_big": RNG.standard_normal((64, 64)).astype(np.float32),  # routed
        "W_t": RNG.standard_normal((48, 64)).astype(np.float32),  # routed (Gemm transB)
        "C": RNG.standard_normal(48).astype(np.float32),
        "W_small": RNG.standard_normal((64, 8)).astype(np.float32),  # under 1024 elements
        "W_a": RNG.standard_normal((64, 32)).astype(np.float32),  # Gemm transA: not expressible
        "W_int": RNG.integers(-3, 3, (64, 64)).astype(np.int32),  # not float
        "W_q": RNG.integers(0, 255, (64, 64)).astype(np.uint8),  # quantized (MatMulInteger)
        "W_over": RNG.standard_normal((64, 64)).astype(np.float32),  # graph input: overridable
    }
    nodes = [
        h.make_node("MatMul", ["x", "W_big"], ["y1"]),
        h.make_node("Gemm", ["x", "W_t", "C"], ["y2"], transB=1, alpha=0.5),
        h.make_node("MatMul", ["x", "W_small"], ["y3"]),
        h.make_node("Gemm", ["xt", "W_a"], ["y4"], transA=1),
        h.make_node("MatMul", ["xi", "W_int"], ["y5"]),
        h.make_node("MatMulInteger", ["q", "W_q"], ["y6"]),
        h.make_node("MatMul", ["x", "W_over"], ["y7"]),
        h.make_node("MatMul", ["x", "b_in"], ["y8"]),
    ]
    outputs = [("y1", F, 64), ("y2", F, 48), ("y3", F, 8), ("y4", F, 32)]
    outputs += [("y5", TensorProto.INT32, 64), ("y6", TensorProto.INT32, 64)]
    outputs += [("y7", F, 64), ("y8", F, 64)]
    graph = h.make_graph(
        nodes,
        "mixed",
        [
            h.make_tensor_value_info("x", F, ["n", 64]),
            h.make_tensor_value_info("xt", F, [64, "n"]),
            h.make_tensor_value_info("xi", TensorProto.INT32, ["n", 64]),
            h.make_tensor_value_info("q", TensorProto.UINT8, ["n", 64]),
            h.make_tensor_value_info("b_in", F, [64, 64]),
            h.make_tensor_value_info("W_over", F, [64, 64]),
        ],
        [h.make_tensor_value_info(name, t, ["n", n]) for name, t, n in outputs],
        [nh.from_array(v, k) for k, v in w.items()],
    )
    feeds = {
        "x": RNG.standard_normal((3, 64)).astype(np.float32),
        "xt": RNG.standard_normal((64, 3)).astype(np.float32),
        "xi": RNG.integers(-3, 3, (3, 64)).astype(np.int32),
        "q": RNG.integers(0, 255, (3, 64)).astype(np.uint8),
        "b_in": RNG.standard_normal((64, 64)).astype(np.float32),
        "W_over": w["W_over"],
    }
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    return model, feeds


def test_only_large_constant_float_matmul_and_gemm_weights_move_to_icl_matmul(tmp_path, caplog):
    proto, feeds = _mixed_model()
    model = ir.from_proto(proto)
    with caplog.at_level(logging.INFO, logger="icl_onnx.passes.read_in_place"):
        assert ReadWeightsInPlacePass()(model).modified
    assert "keeps its weight W_a: Gemm with transA=1" in caplog.text  # the rule's reason
    icl = [n for n in model.graph if n.domain == DOMAIN]
    assert {n.op_type for n in icl} == {MATMUL}
    read = {n.inputs[1].name: n for n in icl}
    assert set(read) == {"W_big", "W_t"}
    gemm = read["W_t"]  # transB and alpha folded into the view, the bias kept
    assert gemm.attributes["transpose"].value == 1
    assert gemm.attributes["scale"].value == pytest.approx(0.5)
    assert gemm.inputs[2].name == "C"
    left = {n.inputs[1].name: n.op_type for n in model.graph if n.domain == ""}
    assert left == {
        "W_small": "MatMul",
        "W_a": "Gemm",
        "W_int": "MatMul",
        "W_q": "MatMulInteger",
        "W_over": "MatMul",
        "b_in": "MatMul",
    }
    assert not ReadWeightsInPlacePass()(model).modified  # nothing left to move
    path = tmp_path / "out.onnx"
    save_model(model, path, external_data=False)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    # the one constant large float B left to pack: the Gemm IclMatMul cannot express
    assert packed_weights(path).names == ("W_a",)
    assert packed_weights(proto.SerializeToString()).names == ("W_a", "W_big", "W_t")
    original = create_session(proto.SerializeToString()).run(None, feeds)
    optimized = create_session(path).run(None, feeds)
    for got, want in zip(optimized, original, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_read_in_place_keeps_the_outputs_of_a_tied_model(tmp_path, dtype):
    """The tied table read twice (Gather, transposed copy) and a plain layer weight."""
    table = RNG.standard_normal((300, 64)).astype(dtype)
    layer = RNG.standard_normal((64, 64)).astype(dtype)
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
    graph = h.make_graph(
        [
            h.make_node("Gather", ["emb", "ids"], ["e"]),
            h.make_node("MatMul", ["e", "layer"], ["hidden"]),
            h.make_node("MatMul", ["hidden", "embT"], ["logits"]),
        ],
        "tied",
        [h.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
        [h.make_tensor_value_info("logits", elem, ["b", "s", 300])],
        [
            nh.from_array(table, "emb"),
            nh.from_array(layer, "layer"),
            nh.from_array(np.ascontiguousarray(table.T), "embT"),
        ],
    )
    src, before, after = (tmp_path / f"{n}.onnx" for n in ("src", "before", "after"))
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]), src)
    optimize_file(src, before)
    assert main(["optimize", str(src), "-o", str(after), "--read-weights-in-place", "-q"]) == 0
    matmuls = {n.inputs[1].name: n.op_type for n in ir.load(after).graph if "MatMul" in n.op_type}
    assert set(matmuls.values()) == {MATMUL} and len(matmuls) == 2
    assert "MatMul" in {n.op_type for n in ir.load(before).graph}  # the layer, by default
    feeds = {"ids": np.array([[0, 17, 299, 5]], np.int64)}
    want = create_session(src).run(None, feeds)[0].astype(np.float32)
    got = create_session(after).run(None, feeds)[0].astype(np.float32)
    tolerance = 1e-4 if dtype == np.float32 else 5e-2
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


def _packing_warnings(path, **kwargs) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_session(path, **kwargs)
    return [str(w.message) for w in caught if "packs on every call" in str(w.message)]


def test_shared_session_warns_once_about_weights_it_would_pack_on_every_call(tmp_path):
    proto, _ = matmul_proto(256, 512)
    src, after = tmp_path / "src.onnx", tmp_path / "after.onnx"
    save_model(ir.from_proto(proto), src, external_data=True)
    (note,) = _packing_warnings(src, share_across_processes=True)
    assert "1 MatMul/Gemm weights (0.5 MB)" in note and "--read-weights-in-place" in note
    assert "\n" not in note
    assert len(_packing_warnings(proto.SerializeToString(), share_across_processes=True)) == 1
    assert _packing_warnings(src) == []  # prepacking on: nothing is packed per call
    optimize_file(src, after, external_data=True, read_weights_in_place=True)
    assert _packing_warnings(after, share_across_processes=True) == []


def test_packing_warning_sees_constant_nodes_and_skips_overridable_weights(tmp_path):
    weight = RNG.standard_normal((64, 64)).astype(np.float32)
    graph = h.make_graph(
        [
            h.make_node("Constant", [], ["Wc"], value=nh.from_array(weight, "Wc")),
            h.make_node("MatMul", ["x", "Wc"], ["y"]),
            h.make_node("MatMul", ["y", "W_over"], ["z"]),
        ],
        "constant",
        [h.make_tensor_value_info("x", F, ["n", 64]), h.make_tensor_value_info("W_over", F, None)],
        [h.make_tensor_value_info("z", F, ["n", 64])],
        [nh.from_array(weight, "W_over")],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    found = packed_weights(model.SerializeToString())
    assert found.names == ("Wc",) and found.nbytes == weight.nbytes


def test_packing_warning_threshold_is_the_optimizer_default():
    assert _PACKED_MIN_ELEMENTS == DEFAULT_MIN_ELEMENTS


@pytest.mark.parametrize("shared", [False, True], ids=["default", "shared"])
def test_session_of_a_read_in_place_model_keeps_no_private_copy_of_its_weight(tmp_path, shared):
    rows, cols = 1024, 8192  # W: 32 MiB
    proto, _ = matmul_proto(rows, cols)
    src, out = tmp_path / "src.onnx", tmp_path / "out.onnx"
    onnx.save(proto, src)
    optimize_file(src, out, external_data=True, read_weights_in_place=True)
    assert [n.op_type for n in ir.load(out).graph if n.inputs[1] is not None][:1] == [MATMUL]
    added = added_memory(out, shared=shared, input_name="x", width=rows)
    weight = rows * cols * 4
    assert added["RssAnon"] < weight // 4, added  # IclMatMul reads W where it lies
    assert added["RssFile"] > weight * 9 // 10, added
