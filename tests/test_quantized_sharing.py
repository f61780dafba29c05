"""Reshape views and the quantized tied embedding (ONNX Runtime GenAI's ``shared_embeddings``).

A MatMulNBits head ``B [N, n_blocks, blob]`` read by the embedding through
``Reshape -> GatherBlockQuantized``: ORT folds the Reshape into a second copy of ``B`` at load.
After icl-onnx the embedding is an ``IclGatherBlockQuantized`` reading ``B`` itself: the same
outputs bit for bit, and ORT's graph holds ``B`` once. Also: which nodes are reshape views, a
reshape view in a subgraph, and lossy near-copies (a float table beside its quantized head).
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import icl_onnx
from icl_onnx import block_quant
from icl_onnx.analysis.near_copies import find_quantized_near_copies
from icl_onnx.analysis.view_nodes import node_view
from icl_onnx.cli.main import main
from icl_onnx.passes.share_quantized import ShareQuantizedPass
from icl_onnx.pipeline import optimize_file, optimize_files
from icl_onnx.planning import analyze

LIBRARY = icl_onnx.library_path()  # fails, never skips, without the op library

N, K = 96, 80  # K not a multiple of the block: the last block is padded
OPSETS = [h.make_opsetid("", 21), h.make_opsetid("com.microsoft", 1)]


def head(bits: int, block: int, symmetric: bool, seed: int = 0):
    w = np.random.default_rng(seed).standard_normal((N, K)).astype(np.float32) * 0.1
    b, scales, zero_points, layout = block_quant.quantize(w, bits, block, symmetric=symmetric)
    return w, b, scales.reshape(N, -1), zero_points, layout


def lm_model(name: str, nodes, inits) -> onnx.ModelProto:
    """A graph of ``nodes`` from ``ids`` [s] and ``x`` [1, K] to ``emb`` [s, K] and ``logits``."""
    graph = h.make_graph(
        nodes,
        name,
        [
            h.make_tensor_value_info("ids", TensorProto.INT64, ["s"]),
            h.make_tensor_value_info("x", TensorProto.FLOAT, [1, K]),
        ],
        [
            h.make_tensor_value_info("emb", TensorProto.FLOAT, ["s", K]),
            h.make_tensor_value_info("logits", TensorProto.FLOAT, [1, N]),
        ],
        inits,
    )
    return h.make_model(graph, opset_imports=OPSETS)


def genai_like(bits: int = 4, block: int = 32, symmetric: bool = True) -> onnx.ModelProto:
    """The GenAI builder's tied int4/int8 pattern: MatMulNBits(B) and Reshape(B) -> GBQ."""
    _, b, scales, zero_points, layout = head(bits, block, symmetric)
    quant = ["B", "scales"] + ([] if zero_points is None else ["zp"])
    flat = layout.n_blocks * layout.blob
    attrs = {"bits": bits, "block_size": block}
    nodes = [
        h.make_node("Reshape", ["B", "flat_shape"], ["B_flat"], name="embed/Reshape"),
        h.make_node(
            "GatherBlockQuantized",
            ["B_flat", "ids", *quant[1:]],
            ["padded"],
            name="embed/GatherBlockQuantized",
            domain="com.microsoft",
            gather_axis=0,
            quantize_axis=1,
            **attrs,
        ),
        h.make_node("Slice", ["padded", "zero", "k", "last"], ["emb"]),
        h.make_node(
            "MatMulNBits", ["x", *quant], ["logits"], domain="com.microsoft", K=K, N=N, **attrs
        ),
    ]
    inits = [
        nh.from_array(b, "B"),
        nh.from_array(scales, "scales"),
        nh.from_array(np.array([N, flat], np.int64), "flat_shape"),
        nh.from_array(np.array([0], np.int64), "zero"),
        nh.from_array(np.array([K], np.int64), "k"),
        nh.from_array(np.array([-1], np.int64), "last"),
    ]
    if zero_points is not None:
        inits.append(nh.from_array(zero_points.reshape(N, -1), "zp"))
    return lm_model("genai_like", nodes, inits)


def ort_graph_initializer_bytes(path: str, folder) -> dict[str, int]:
    """The initializers of the graph ORT builds for ``path`` (name -> bytes)."""
    options = icl_onnx.session_options()
    out = os.path.join(folder, "ort_graph.onnx")
    options.optimized_model_filepath = out
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    graph = onnx.load(out).graph
    return {t.name: nh.to_array(t).nbytes for t in graph.initializer}


def run(path: str, feeds: dict) -> list[np.ndarray]:
    return icl_onnx.create_session(path).run(None, feeds)


FEEDS = {
    "ids": np.array([0, 95, -1, 17, 17], np.int64),
    "x": np.random.default_rng(3).standard_normal((1, K)).astype(np.float32),
}


@pytest.mark.parametrize(
    "bits,block,symmetric",
    [(4, 32, True), (4, 16, False), (8, 32, True), (8, 64, False)],
)
def test_genai_tied_quantized_embedding_reads_the_head_once(tmp_path, bits, block, symmetric):
    src, dst = tmp_path / "src.onnx", tmp_path / "dst.onnx"
    onnx.save(genai_like(bits, block, symmetric), src)
    before = ort_graph_initializer_bytes(str(src), tmp_path)
    b_bytes = N * -(-K // block) * block * bits // 8
    assert sum(v == b_bytes for v in before.values()) == 2  # B and ORT's folded Reshape

    result = optimize_file(src, dst)
    assert result.modified
    (group,) = result.plan.groups
    (member,) = group.members
    assert member.source == "Reshape" and member.view.kind == "reshape"
    assert member.consumers[0].rule_name == "gather-block-quantized"

    optimized = onnx.load(dst)
    onnx.checker.check_model(optimized)
    ops = [n.op_type for n in optimized.graph.node]
    assert "Reshape" not in ops and "GatherBlockQuantized" not in ops
    assert "flat_shape" not in {t.name for t in optimized.graph.initializer}
    (node,) = [n for n in optimized.graph.node if n.op_type == "IclGatherBlockQuantized"]
    assert node.input[0] == "B"
    after = ort_graph_initializer_bytes(str(dst), tmp_path)
    assert sum(v == b_bytes for v in after.values()) == 1

    original = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    for want, got in zip(original.run(None, FEEDS), run(str(dst), FEEDS), strict=True):
        assert want.dtype == got.dtype and want.tobytes() == got.tobytes()


def test_a_reshape_view_in_a_subgraph_is_shared(tmp_path):
    outer = genai_like()
    gbq = outer.graph.node[1]
    branch = h.make_graph(
        [gbq], "then", [], [h.make_tensor_value_info("padded", TensorProto.FLOAT, None)]
    )
    other = h.make_graph(
        [
            h.make_node(
                "GatherBlockQuantized",
                ["B_flat", "ids", "scales"],
                ["padded2"],
                domain="com.microsoft",
                gather_axis=0,
                quantize_axis=1,
                bits=4,
                block_size=32,
            )
        ],
        "else",
        [],
        [h.make_tensor_value_info("padded2", TensorProto.FLOAT, None)],
    )
    cond = h.make_node("If", ["flag"], ["padded"], then_branch=branch, else_branch=other)
    del outer.graph.node[1]
    outer.graph.node.insert(1, cond)
    outer.graph.input.append(h.make_tensor_value_info("flag", TensorProto.BOOL, []))
    src, dst = tmp_path / "src.onnx", tmp_path / "dst.onnx"
    onnx.save(outer, src)
    optimize_file(src, dst)
    text = onnx.printer.to_text(onnx.load(dst))
    assert text.count("IclGatherBlockQuantized") == 2 and "Reshape" not in text
    feeds = {**FEEDS, "flag": np.array(True)}
    original = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    for want, got in zip(original.run(None, feeds), run(str(dst), feeds), strict=True):
        assert want.tobytes() == got.tobytes()


def _node(op, inputs, **attrs) -> ir.Node:
    graph = h.make_graph(
        [h.make_node(op, ["W", *[n for n, _ in inputs]], ["y"], **attrs)],
        "g",
        [],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [nh.from_array(np.zeros((2, 1, 3, 4), np.float32), "W")]
        + [nh.from_array(np.array(v, np.int64), n) for n, v in inputs],
    )
    model = ir.from_proto(h.make_model(graph, opset_imports=[h.make_opsetid("", 21)]))
    return model.graph.node(0)


@pytest.mark.parametrize(
    "op,inputs,attrs,shape",
    [
        ("Reshape", [("s", [6, -1])], {}, (6, 4)),
        ("Reshape", [("s", [0, 0, 12])], {}, (2, 1, 12)),
        ("Flatten", [], {"axis": 2}, (2, 12)),
        ("Flatten", [], {}, (2, 12)),
        ("Squeeze", [("a", [1])], {}, (2, 3, 4)),
        ("Squeeze", [], {}, (2, 3, 4)),
        ("Unsqueeze", [("a", [0, -1])], {}, (1, 2, 1, 3, 4, 1)),
    ],
)
def test_reshapes_with_constant_arguments_are_views(op, inputs, attrs, shape):
    view = node_view(_node(op, inputs, **attrs))
    assert view is not None and view.shape == shape and view.parts == ("reshape",)


@pytest.mark.parametrize(
    "op,inputs",
    [("Reshape", [("s", [5, -1])]), ("Squeeze", [("a", [0])]), ("Reshape", [("s", [-1, -1])])],
)
def test_reshapes_that_do_not_fit_are_not_views(op, inputs):
    assert node_view(_node(op, inputs)) is None


def test_a_reshape_view_no_rule_reads_leaves_the_model_alone(tmp_path):
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    graph = h.make_graph(
        [
            h.make_node("Reshape", ["W", "s"], ["W2"]),
            h.make_node("Add", ["W2", "z"], ["y"]),
            h.make_node("MatMul", ["x", "W"], ["m"]),
        ],
        "g",
        [
            h.make_tensor_value_info("z", TensorProto.FLOAT, [32, 64]),
            h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64]),
        ],
        [
            h.make_tensor_value_info("y", TensorProto.FLOAT, [32, 64]),
            h.make_tensor_value_info("m", TensorProto.FLOAT, [1, 32]),
        ],
        [nh.from_array(w, "W"), nh.from_array(np.array([32, 64], np.int64), "s")],
    )
    model = ir.from_proto(h.make_model(graph, opset_imports=[h.make_opsetid("", 21)]))
    assert analyze(model).groups == []


# --- lossy near-copies: a float table beside its quantized head ------------------------------


def untied(bits: int = 4, block: int = 32, table_scale: float = 1.0) -> onnx.ModelProto:
    """GenAI's ``shared_embeddings=false``: a float table and a MatMulNBits head of it."""
    w, b, scales, _, _ = head(bits, block, symmetric=True)
    nodes = [
        h.make_node("Gather", ["table", "ids"], ["emb"]),
        h.make_node(
            "MatMulNBits",
            ["x", "B", "scales"],
            ["logits"],
            domain="com.microsoft",
            K=K,
            N=N,
            bits=bits,
            block_size=block,
        ),
    ]
    inits = [nh.from_array(w * table_scale, "table"), nh.from_array(b, "B")]
    return lm_model("untied", nodes, [*inits, nh.from_array(scales, "scales")])


@pytest.mark.parametrize("bits", [4, 8])
def test_a_float_table_beside_its_quantized_head_is_reported(bits):
    model = ir.from_proto(untied(bits))
    (near,) = find_quantized_near_copies(model)
    assert (near.table, near.quantized, near.shape) == ("table", "B", (N, K))
    assert near.table_bytes == N * K * 4 and near.shareable
    _, _, scales, _, _ = head(bits, 32, symmetric=True)
    assert 0 < near.mean_error < near.max_error <= np.abs(scales).max() * 1.001
    assert 0.3 < near.max_steps <= 1.001
    assert analyze(model).groups == []  # never applied by the exact pipeline


def test_a_table_that_is_not_the_heads_is_not_reported():
    assert find_quantized_near_copies(ir.from_proto(untied(4, table_scale=1.5))) == []


def test_share_quantized_makes_the_embedding_read_the_head(tmp_path):
    model = ir.from_proto(untied(4))
    assert ShareQuantizedPass()(model).modified
    assert "table" not in model.graph.initializers
    (node,) = [n for n in model.graph if n.op_type == "IclGatherBlockQuantized"]
    assert node.inputs[0].name == "B"
    path = tmp_path / "shared.onnx"
    ir.save(model, path)
    emb, logits = run(str(path), FEEDS)
    w, b, scales, _, layout = head(4, 32, symmetric=True)
    ids = np.where(FEEDS["ids"] < 0, FEEDS["ids"] + N, FEEDS["ids"])
    assert emb.tobytes() == block_quant.dequantize(b, scales, None, layout, ids).tobytes()
    assert np.max(np.abs(emb - w[ids])) <= np.max(np.abs(scales))


def test_scan_lists_the_near_copy_in_text_and_json(tmp_path, capsys):
    path = tmp_path / "untied.onnx"
    onnx.save(untied(4), path)
    assert main(["scan", str(path)]) == 0
    text = capsys.readouterr().out
    assert "no initializer is a copy or view of another" in text
    assert "near-copy (lossy) table [96x80] (30.7 kB): B (MatMulNBits 4-bit, block 32" in text
    assert "--share-quantized" in text
    assert main(["scan", str(path), "--json"]) == 0
    (near,) = json.loads(capsys.readouterr().out)["near_copies"]
    assert near["table"] == "table" and near["quantized"] == "B" and near["shareable"]
    assert near["table_bytes"] == N * K * 4 and 0 < near["max_error"] <= near["max_abs"]


def test_optimize_shares_the_near_copy_only_when_asked(tmp_path, capsys):
    path, plain, lossy = tmp_path / "u.onnx", tmp_path / "plain.onnx", tmp_path / "lossy.onnx"
    onnx.save(untied(4), path)
    assert main(["optimize", str(path), "-o", str(plain)]) == 0
    assert "table" in {t.name for t in onnx.load(plain).graph.initializer}
    capsys.readouterr()
    assert main(["optimize", str(path), "-o", str(lossy), "--share-quantized", "--json"]) == 0
    (shared,) = json.loads(capsys.readouterr().out)["shared_quantized"]
    assert shared["table"] == "table"
    graph = onnx.load(lossy).graph
    assert "table" not in {t.name for t in graph.initializer}
    assert [n.op_type for n in graph.node][0] == "IclGatherBlockQuantized"


def test_a_gather_block_quantized_the_icl_op_cannot_read_keeps_its_copy():
    proto = genai_like(4, 32)
    (bits,) = [a for a in proto.graph.node[1].attribute if a.name == "bits"]
    bits.i = 2  # a layout the ICL kernels do not read
    plan = analyze(ir.from_proto(proto))
    (group,) = plan.groups
    (member,) = group.members
    assert member.kept_reason == "GatherBlockQuantized with bits=2 (the ICL kernels read 4 and 8)"


def test_reshape_views_are_shared_across_files(tmp_path):
    """The head in one file, the embedding (Reshape -> GBQ of a copy of B) in another."""
    head, emb = genai_like(), genai_like()
    del head.graph.node[:3], head.graph.output[0], head.graph.input[0]
    keep = {"B", "scales"}
    for proto in (head,):
        kept = [t for t in proto.graph.initializer if t.name in keep]
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(kept)
    del emb.graph.node[3], emb.graph.output[1], emb.graph.input[1]
    onnx.save(head, tmp_path / "head.onnx")
    onnx.save(emb, tmp_path / "emb.onnx")
    out = tmp_path / "out"
    out.mkdir()
    result = optimize_files([tmp_path / "head.onnx", tmp_path / "emb.onnx"], out)
    (cross,) = result.plan.groups
    assert (cross.model, cross.canonical, cross.members[0].model) == ("head.onnx", "B", "emb.onnx")
    (group,) = result.plan.plans[1].groups
    assert group.members[0].view.kind == "reshape"
    assert result.unique_bytes < result.tensor_bytes  # B stored once for both files
    ops = [n.op_type for n in onnx.load(out / "emb.onnx", load_external_data=False).graph.node]
    assert ops == ["IclGatherBlockQuantized", "Slice"]
    feeds = {"ids": FEEDS["ids"]}
    original = ort.InferenceSession(str(tmp_path / "emb.onnx"), providers=["CPUExecutionProvider"])
    (want,) = original.run(None, feeds)
    (got,) = run(str(out / "emb.onnx"), feeds)
    assert want.tobytes() == got.tobytes()


def _qdq_model(table: np.ndarray, vocab: int) -> ir.Model:
    """A float table read by Gather, and a per-channel int8 DequantizeLinear of ``table^T``
    (or of a random ``[H, vocab]`` weight when ``vocab`` differs) feeding a MatMul."""
    rng = np.random.default_rng(3)
    weight_t = table.T if vocab == table.shape[0] else rng.standard_normal((table.shape[1], vocab))
    scale = (np.abs(weight_t).max(axis=0) / 127).astype(np.float32)
    q = np.clip(np.round(weight_t / scale), -127, 127).astype(np.int8)
    graph = h.make_graph(
        [
            h.make_node("Gather", ["table", "ids"], ["e"]),
            h.make_node("DequantizeLinear", ["q", "scale"], ["w"], axis=1),
            h.make_node("MatMul", ["e", "w"], ["y"]),
        ],
        "qdq",
        [h.make_tensor_value_info("ids", TensorProto.INT64, [2])],
        [h.make_tensor_value_info("y", TensorProto.FLOAT, [2, vocab])],
        [nh.from_array(table, "table"), nh.from_array(q, "q"), nh.from_array(scale, "scale")],
    )
    return ir.from_proto(h.make_model(graph, opset_imports=[h.make_opsetid("", 21)]))


def test_a_qdq_weight_within_a_step_of_a_table_is_a_near_copy_and_no_other_is():
    table = np.random.default_rng(2).standard_normal((N, K)).astype(np.float32)
    (near,) = find_quantized_near_copies(_qdq_model(table, N))
    assert near.table == "table" and near.quantized == "q" and near.transposed
    assert 0 < near.max_steps <= 1.0
    assert not near.shareable and "DequantizeLinear" in near.reason
    assert find_quantized_near_copies(_qdq_model(table, N + 16)) == []  # another shape
