"""optimize is idempotent and keeps the model's versions; its output passes the full checker."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from builders import V, W, tied_model
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from icl_onnx.pipeline import optimize_file
from icl_onnx.reference import evaluator

RNG = np.random.default_rng(0)
MIN = 16


def build(kind: str, ir_version: int, opset: int) -> onnx.ModelProto:
    """A Gather on ``emb`` and a second consumer reading ``kind``'s copy of it."""
    if kind in ("transposed copy", "transpose node"):
        model = tied_model(transpose_node=kind == "transpose node")
    elif kind == "exact copy, Gemm transB":
        nodes = [
            h.make_node("Gather", ["emb", "ids"], ["e"], name="embed"),
            h.make_node("Flatten", ["e"], ["f"], axis=2),
            h.make_node("Gemm", ["f", "emb2"], ["y"], transB=1, alpha=0.5),
        ]
        graph = h.make_graph(
            nodes,
            "g",
            [h.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])],
            [h.make_tensor_value_info("y", TensorProto.FLOAT, ["s", V])],
            [nh.from_array(W, "emb"), nh.from_array(W.copy(), "emb2")],
        )
        model = h.make_model(graph)
    else:
        raise ValueError(kind)
    del model.opset_import[:]
    model.opset_import.append(h.make_opsetid("", opset))
    model.ir_version = ir_version
    return model


KINDS = ["transposed copy", "transpose node", "exact copy, Gemm transB"]


def files_of(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external data"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_second_optimize_changes_nothing_byte_for_byte(tmp_path, kind, external):
    src, out = tmp_path / "src" / "m.onnx", tmp_path / "out" / "m.onnx"
    src.parent.mkdir()
    out.parent.mkdir()
    model = ir.from_proto(build(kind, 8, 17))
    ir.save(model, src, external_data="m.onnx.data" if external else None, size_threshold_bytes=0)

    first = optimize_file(src, out, min_elements=MIN)
    assert first.modified
    once = files_of(out.parent)
    second = optimize_file(out, out, min_elements=MIN)  # in place: same data file name
    assert not second.modified
    assert second.plan.groups == []
    assert files_of(out.parent) == once
    assert ("m.onnx.data" in once) == external


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("ir_version", "opset"), [(8, 17), (10, 21)])
def test_optimize_keeps_versions_and_passes_the_full_checker(tmp_path, kind, ir_version, opset):
    original = build(kind, ir_version, opset)
    src, out = tmp_path / "m.onnx", tmp_path / "o.onnx"
    onnx.save(original, src)
    optimize_file(src, out, min_elements=MIN)
    optimized = onnx.load(out)
    onnx.checker.check_model(str(out), full_check=True)
    assert optimized.ir_version == ir_version
    opsets = {o.domain: o.version for o in optimized.opset_import}
    assert opsets == {"": opset, "ai.icl": 1}
    assert len(optimized.graph.initializer) == 1
    ids = RNG.integers(0, V, size=(2, 3))
    want = evaluator(original).run(None, {"ids": ids})[0]
    got = evaluator(optimized).run(None, {"ids": ids})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
