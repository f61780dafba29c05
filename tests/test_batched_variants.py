"""One model for a base and its low-rank variants: each batch row runs its own variant.

``optimize BASE V1 ... --batched-variants -o OUT`` adds an input ``variant_ids`` and makes every
MatMul/Gemm whose weight a variant changes read the variants' stacked factors per row. Tiny
graphs built inline check the structure and the numbers (onnx's reference evaluator with the
ICL ops, and ONNX Runtime with the op library); peft LoRA merges of a tiny Llama, with and
without a KV cache, check real exports; refusals name what differs.
"""

from __future__ import annotations

import hashlib
import json

import lora_models as lm
import numpy as np
import onnx
import onnx_ir as ir
import pytest
from builders import IR_VERSION
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from icl_onnx.check import check_batched_variants
from icl_onnx.cli.main import main as cli_main
from icl_onnx.errors import IclUserError
from icl_onnx.passes import BatchVariantsPass
from icl_onnx.pipeline import optimize_batched_variants
from icl_onnx.reference import evaluator

H, N = 64, 48  # hidden and inner width of the tiny graph
RANKS = (2, 4, 3)  # of variants 1..3 on W1
ROWS = [1, 2, 3, 0, 2, 1]  # every variant, the base, repeats


def _graph_model(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """``x[B,S,H] -> MatMul(W1) + b1 -> Relu -> flatten -> Gemm(W2^T, c2) -> [B,S,H]``."""
    nodes = [
        h.make_node("MatMul", ["x", "W1"], ["y"]),
        h.make_node("Add", ["y", "b1"], ["yb"]),
        h.make_node("Relu", ["yb"], ["r"]),
        h.make_node("Reshape", ["r", "flat"], ["r2"]),
        h.make_node("Gemm", ["r2", "W2", "c2"], ["z2"], transB=1),
        h.make_node("Shape", ["x"], ["xs"]),
        h.make_node("Reshape", ["z2", "xs"], ["z"]),
    ]
    inits = [nh.from_array(v, k) for k, v in weights.items()]
    inits.append(nh.from_array(np.array([-1, N], np.int64), "flat"))
    graph = h.make_graph(
        nodes,
        "tiny",
        [h.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", H])],
        [h.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", "seq", H])],
        inits,
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)], ir_version=IR_VERSION)


def _base_weights(rng) -> dict[str, np.ndarray]:
    """Weights scaled as a trained layer's (outputs of order 1)."""
    return {
        "W1": (rng.standard_normal((H, N)) / 8).astype(np.float32),
        "b1": (rng.standard_normal(N) / 8).astype(np.float32),
        "W2": (rng.standard_normal((H, N)) / 8).astype(np.float32),  # Gemm transB=1: [out, in]
        "c2": (rng.standard_normal(H) / 8).astype(np.float32),
    }


def _low_rank(rng, shape, rank) -> np.ndarray:
    u, v = rng.standard_normal((shape[0], rank)), rng.standard_normal((rank, shape[1]))
    return (u @ v / 64).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The base and three variants: W1 changed by each (ranks 2, 4, 3), W2 by variants 1 and 3."""
    folder = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    base = _base_weights(rng)
    paths = [folder / "base.onnx"]
    onnx.save(_graph_model(base), str(paths[0]))
    for k, rank in enumerate(RANKS, start=1):
        weights = dict(base)
        weights["W1"] = base["W1"] + _low_rank(rng, (H, N), rank)
        if k != 2:
            weights["W2"] = base["W2"] + _low_rank(rng, (H, N), 2)
        paths.append(folder / f"v{k}.onnx")
        onnx.save(_graph_model(weights), str(paths[-1]))
    return paths


@pytest.fixture(scope="module")
def batched(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("batched") / "batched.onnx"
    result = optimize_batched_variants(tiny, out, min_elements=16)
    return out, result


def _alone_output(path, feeds: dict[str, np.ndarray], index: int) -> np.ndarray:
    """Output ``index`` of the model at ``path`` in plain ONNX Runtime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[index]


def _alone(path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return _alone_output(path, feeds, 0)


def _relative(want: np.ndarray, got: np.ndarray) -> float:
    return float(np.abs(want - got).max() / np.abs(want).max())


def test_the_batched_model_has_variant_ids_and_stacked_factors(tiny, batched):
    out, result = batched
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    ids = model.graph.input[-1]
    assert ids.name == "variant_ids"
    assert ids.type.tensor_type.elem_type == TensorProto.INT64
    assert [d.dim_param for d in ids.type.tensor_type.shape.dim] == ["batch"]
    icl = [n for n in model.graph.node if n.op_type == "IclMatMul"]
    assert len(icl) == 2 and all(n.input[5] == "variant_ids" for n in icl)
    assert not any(n.op_type in ("MatMul", "Gemm") for n in model.graph.node)
    inits = {t.name: nh.to_array(t) for t in model.graph.initializer}
    by_name = {w.name: w for w in result.batch.weights}
    assert by_name["W1"].ranks == [0, *RANKS] and by_name["W2"].ranks == [0, 2, 0, 2]
    u1, v1 = inits[icl[0].input[3]], inits[icl[0].input[4]]
    assert u1.shape == (4, H, 4) and v1.shape == (4, 4, N)  # padded to the largest rank
    assert not u1[0].any() and not v1[0].any()  # the base's slice is zero
    assert not u1[1][:, 2:].any()  # rank 2 padded with zero columns
    u2 = inits[icl[1].input[3]]
    assert not u2[2].any()  # variant 2 leaves W2 alone
    # the base weights are stored once, beside the factors
    base = onnx.load(str(tiny[0]))
    base_bytes = sum(nh.to_array(t).nbytes for t in base.graph.initializer)
    assert result.input_bytes == [base_bytes] * 4
    assert result.output_bytes == base_bytes + result.factor_bytes
    np.testing.assert_array_equal(inits["W1"], nh.to_array(base.graph.initializer[0]))


@pytest.mark.parametrize("runner", ["reference", "onnxruntime"])
def test_every_row_matches_its_own_variant(tiny, batched, runner, request):
    out, _ = batched
    rng = np.random.default_rng(1)
    x = rng.standard_normal((len(ROWS), 3, H)).astype(np.float32)
    feeds = {"x": x, "variant_ids": np.array(ROWS, np.int64)}
    if runner == "reference":
        got = evaluator(onnx.load(str(out))).run(None, feeds)[0]
    else:
        request.getfixturevalue("icl_library")
        import icl_onnx

        got = icl_onnx.create_session(str(out)).run(None, feeds)[0]
    assert got.shape == (len(ROWS), 3, H)
    for row, variant in enumerate(ROWS):
        want = _alone(tiny[variant], {"x": x[row : row + 1]})
        assert _relative(want, got[row : row + 1]) <= 1e-5, (row, variant)


def _branching_model(w: np.ndarray) -> onnx.ModelProto:
    """``If(cond)`` whose two branches read the main graph's ``W`` (a merged decoder's shape)."""
    out = [h.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    then = h.make_graph([h.make_node("MatMul", ["x", "W"], ["y"])], "then", [], out)
    other = h.make_graph(
        [h.make_node("MatMul", ["x", "W"], ["m"]), h.make_node("Relu", ["m"], ["y"])],
        "else",
        [],
        out,
    )
    graph = h.make_graph(
        [h.make_node("If", ["cond"], ["z"], then_branch=then, else_branch=other)],
        "branching",
        [
            h.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", H]),
            h.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [h.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", "seq", N])],
        [nh.from_array(w, "W")],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)], ir_version=IR_VERSION)


@pytest.mark.parametrize("cond", [True, False])
def test_a_weight_read_in_two_branches_takes_factors_both_graphs_see(tmp_path, cond):
    rng = np.random.default_rng(8)
    w = rng.standard_normal((H, N)).astype(np.float32)
    paths = [tmp_path / "b.onnx", tmp_path / "v.onnx"]
    onnx.save(_branching_model(w), str(paths[0]))
    onnx.save(_branching_model(w + _low_rank(rng, (H, N), 3)), str(paths[1]))
    out = tmp_path / "out.onnx"
    optimize_batched_variants(paths, out, min_elements=16)
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert {t.name for t in model.graph.initializer} == {"W", "W.batched_u", "W.batched_v"}
    rows = [1, 0, 1]
    x = rng.standard_normal((3, 2, H)).astype(np.float32)
    feeds = {"x": x, "cond": np.array(cond), "variant_ids": np.array(rows, np.int64)}
    got = evaluator(model).run(None, feeds)[0]
    for row, variant in enumerate(rows):
        want = _alone(paths[variant], {"x": x[row : row + 1], "cond": np.array(cond)})
        assert _relative(want, got[row : row + 1]) <= 1e-5


def _table_and_transposed_copy(e: np.ndarray, wt: np.ndarray) -> onnx.ModelProto:
    """``Gather(E, ids)`` and ``Gemm(a, Wt, transB=1)``, where the base's ``Wt`` is ``E^T``."""
    p, q = e.shape
    graph = h.make_graph(
        [
            h.make_node("Gather", ["E", "ids"], ["g"]),
            h.make_node("Reshape", ["a", "flat"], ["a2"]),
            h.make_node("Gemm", ["a2", "Wt"], ["y2"], transB=1),
            h.make_node("Shape", ["g"], ["gs"]),
            h.make_node("Reshape", ["y2", "gs"], ["y"]),
        ],
        "tied",
        [
            h.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            h.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", "seq", p]),
        ],
        [
            h.make_tensor_value_info("g", TensorProto.FLOAT, ["batch", "seq", q]),
            h.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", q]),
        ],
        [nh.from_array(e, "E"), nh.from_array(wt, "Wt"), nh.from_array(np.array([-1, p]), "flat")],
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 18)], ir_version=IR_VERSION)


def test_a_batched_weight_that_is_a_transposed_copy_keeps_its_delta_when_shared(tmp_path):
    """Sharing folds ``Wt = E^T`` into the batched node's view; the factors stay (U·V)^T."""
    rng = np.random.default_rng(9)
    e = (rng.standard_normal((40, 24)) / 8).astype(np.float32)
    paths = [tmp_path / "b.onnx", tmp_path / "v.onnx"]
    onnx.save(_table_and_transposed_copy(e, e.T.copy()), str(paths[0]))
    changed = e.T + _low_rank(rng, (24, 40), 2)
    onnx.save(_table_and_transposed_copy(e, changed), str(paths[1]))
    out = tmp_path / "out.onnx"
    result = optimize_batched_variants(paths, out, min_elements=16)
    assert [g.canonical for g in result.plan.groups] == ["E"]  # Wt is read as E transposed
    model = onnx.load(str(out))
    (node,) = [n for n in model.graph.node if n.op_type == "IclMatMul"]
    attrs = {a.name: a.i for a in node.attribute}
    assert node.input[1] == "E" and attrs.get("delta_transpose") == 1
    assert "Wt" not in {t.name for t in model.graph.initializer}
    rows = [1, 0, 1]
    feeds = {
        "ids": rng.integers(0, 40, (3, 5)),
        "a": rng.standard_normal((3, 5, 40)).astype(np.float32),
    }
    got = evaluator(model).run(None, {**feeds, "variant_ids": np.array(rows, np.int64)})[1]
    for row, variant in enumerate(rows):
        alone = {k: v[row : row + 1] for k, v in feeds.items()}
        want = _alone_output(paths[variant], alone, 1)
        assert _relative(want, got[row : row + 1]) <= 1e-5


def _other_op(model: onnx.ModelProto) -> None:
    model.graph.node[2].op_type = "Tanh"


def _other_attribute(model: onnx.ModelProto) -> None:
    model.graph.node[4].attribute.append(h.make_attribute("alpha", 0.5))


def _extra_node(model: onnx.ModelProto) -> None:
    model.graph.node[2].output[0] = "r0"
    model.graph.node.insert(3, h.make_node("Identity", ["r0"], ["r"]))


def _other_wiring(model: onnx.ModelProto) -> None:
    model.graph.node[2].input[0] = "y"  # Relu reads the MatMul, skipping the bias


def _other_opset(model: onnx.ModelProto) -> None:
    model.opset_import[0].version = 17


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_other_opset, r"opset imports \{'': 17\} against \{'': 18\}"),
        (_other_op, r"node 2 \(Relu\): the variant has Tanh there"),
        (
            _other_attribute,
            r"node 4 \(Gemm\): attributes \['transB'\] against \['alpha', 'transB'\]",
        ),
        (_extra_node, r"8 nodes against the base's 7"),
        (_other_wiring, r"node 2 \(Relu\) input 0: reads 'y' where the base reads 'yb'"),
    ],
    ids=["opset", "op", "attribute", "node-count", "wiring"],
)
def test_the_pass_refuses_variants_whose_graph_differs_naming_the_first_difference(change, message):
    weights = _base_weights(np.random.default_rng(2))
    base = ir.from_proto(_graph_model(weights))
    other = _graph_model(weights)
    change(other)
    with pytest.raises(IclUserError, match=rf"cannot batch the variants: other\.onnx: {message}"):
        BatchVariantsPass([ir.from_proto(other)], ["base.onnx", "other.onnx"])(base)
    assert [v.name for v in base.graph.inputs] == ["x"]  # refused before any change


def test_the_pass_refuses_dense_and_bias_changes_naming_the_tensors():
    rng = np.random.default_rng(3)
    weights = _base_weights(rng)
    changed = dict(weights)
    changed["W2"] = weights["W2"] + rng.standard_normal((H, N)).astype(np.float32) / 8  # dense
    changed["b1"] = weights["b1"] + 1.0
    base = ir.from_proto(_graph_model(weights))
    variant = ir.from_proto(_graph_model(changed))
    batch = BatchVariantsPass([variant], ["base", "ft"])
    with pytest.raises(IclUserError) as caught:
        batch(base)
    message = str(caught.value)
    assert "2 tensor(s)" in message
    assert "ft b1: a 1-D tensor changed" in message
    assert "ft W2: not a low-rank delta" in message
    assert {(d.name, d.model) for d in batch.plan.refused} == {("b1", "ft"), ("W2", "ft")}
    assert "variant_ids" not in [v.name for v in base.graph.inputs]  # refused before any change


def test_a_changed_embedding_table_is_refused_as_read_by_a_gather():
    rng = np.random.default_rng(4)
    table = rng.standard_normal((100, 32)).astype(np.float32)

    def model(t):
        graph = h.make_graph(
            [h.make_node("Gather", ["T", "ids"], ["y"])],
            "g",
            [h.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
            [h.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [nh.from_array(t, "T")],
        )
        return ir.from_proto(h.make_model(graph, opset_imports=[h.make_opsetid("", 18)]))

    with pytest.raises(IclUserError, match=r"v T: read by Gather"):
        BatchVariantsPass([model(table + _low_rank(rng, (100, 32), 2))], ["b", "v"])(model(table))


def test_mismatched_input_names_are_refused(tmp_path):
    rng = np.random.default_rng(5)
    weights = _base_weights(rng)
    base = ir.from_proto(_graph_model(weights))
    renamed = _graph_model(weights)
    renamed.graph.input[0].name = "hidden"
    for node in renamed.graph.node:
        node.input[:] = ["hidden" if i == "x" else i for i in node.input]
    with pytest.raises(IclUserError, match=r"graph inputs differ: hidden: .* against the base's x"):
        BatchVariantsPass([ir.from_proto(renamed)], ["b", "v"])(base)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_writes_the_batched_model_and_reports_sizes(tiny, tmp_path, capsys):
    before = [_digest(p) for p in tiny]
    out = tmp_path / "out.onnx"
    args = ["optimize", *map(str, tiny), "--batched-variants", "-o", str(out), "-q"]
    assert cli_main([*args, "--min-elements", "16"]) == 0
    text = capsys.readouterr().out
    assert "rank per model" in text and "0 2 4 3" in text
    assert "stacked factors" in text and "for 4 models" in text
    assert [_digest(p) for p in tiny] == before  # inputs untouched
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, nothing left over
    assert cli_main([*args, "--min-elements", "16", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["output_bytes"] == sum(data["input_bytes"][:1]) + data["factor_bytes"]
    assert [w["ranks"] for w in data["batch"]["weights"]] == [[0, 2, 4, 3], [0, 2, 0, 2]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{b}", "--batched-variants", "-o", "{out}"], "at least one variant"),
        (["{b}", "{v}", "--batched-variants", "--out-dir", "{tmp}"], "give -o OUT.onnx"),
        (["{b}", "{v}", "--batched-variants", "-o", "{v}"], "is one of the input models"),
        (["{b}", "{v}", "--batched-variants", "-o", "{out}", "--share-quantized"], "does not take"),
        (["{b}", "{tmp}/missing.onnx", "--batched-variants", "-o", "{out}"], "missing.onnx"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(tiny, tmp_path, capsys, argv, message):
    names = {"b": tiny[0], "v": tiny[1], "out": tmp_path / "out.onnx", "tmp": tmp_path}
    before = _digest(tiny[1])
    code = cli_main(["optimize", *(a.format(**names) for a in argv)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert _digest(tiny[1]) == before
    assert not (tmp_path / "out.onnx").exists()


def test_cli_refuses_a_dense_variant_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(6)
    weights = _base_weights(rng)
    dense = dict(weights, W1=weights["W1"] + rng.standard_normal((H, N)).astype(np.float32))
    onnx.save(_graph_model(weights), str(tmp_path / "b.onnx"))
    onnx.save(_graph_model(dense), str(tmp_path / "d.onnx"))
    out = tmp_path / "out.onnx"
    argv = [
        str(tmp_path / "b.onnx"),
        str(tmp_path / "d.onnx"),
        "--batched-variants",
        "-o",
        str(out),
    ]
    assert cli_main(["optimize", *argv, "--min-elements", "16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "d.onnx W1: not a low-rank delta" in err
    assert "--out-dir and SessionGroup" in err
    assert not out.exists()


# ---- check --variants -----------------------------------------------------------------------


def test_check_passes_each_row_and_fails_a_wrong_factor(tiny, batched, tmp_path, icl_library):
    out, _ = batched
    report = check_batched_variants(out, tiny)
    assert report.variant_ids == [1, 2, 3, 0, 1]
    assert report.passed and [r.variant for r in report.rows] == report.variant_ids
    assert all(o.max_rel <= 1e-5 or o.max_abs <= 1e-5 for r in report.rows for o in r.outputs)

    # A deliberately wrong factor: variant 2's slice of W1's U, scaled.
    model = onnx.load(str(out))
    node = next(n for n in model.graph.node if n.op_type == "IclMatMul")
    init = next(t for t in model.graph.initializer if t.name == node.input[3])
    u = nh.to_array(init).copy()
    u[2] *= 1.5
    init.CopyFrom(nh.from_array(u, init.name))
    wrong = tmp_path / "wrong.onnx"
    onnx.save(model, str(wrong))
    report = check_batched_variants(wrong, tiny)
    assert not report.passed
    assert [r.row for r in report.rows if not r.passed] == [1]  # only the row of variant 2


def test_check_cli_exit_codes(tiny, batched, capsys, icl_library):
    out, _ = batched
    models = [str(p) for p in tiny]
    assert cli_main(["check", str(out), "--variants", *models, "-q"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert cli_main(["check", str(out), "--variants", *models, "--json", "-q"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] and len(data["rows"]) == 5
    # too few models for the stacked factors; the batched model itself as an original
    assert cli_main(["check", str(out), "--variants", *models[:2], "-q"]) == 2
    assert "stacks factors for 4 models" in capsys.readouterr().err
    assert cli_main(["check", models[0], "--variants", *models, "-q"]) == 2
    assert "no 1-D input variant_ids" in capsys.readouterr().err
    assert cli_main(["check", str(out), "--variants", *models, "--variant-ids", "1,7"]) == 2
    assert "--variant-ids must be ids in [0, 3]" in capsys.readouterr().err


# ---- peft LoRA merges of a tiny Llama --------------------------------------------------------


@pytest.fixture(scope="module")
def lora_exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora_batched")
    cache = {}

    def get(name: str, past: bool = False):
        key = (name, past)
        if key not in cache:
            path = folder / f"{name}{'_past' if past else ''}.onnx"
            variant = lm.VARIANTS[name]
            cache[key] = (
                lm.export_with_past(variant, path)
                if past
                else lm.export(variant, path, dynamo=False)
            )
        return cache[key]

    return get


def test_lora_variants_batch_into_one_model_that_matches_each_export(
    lora_exports, tmp_path, icl_library
):
    import icl_onnx

    names = ["base", "qv_r4", "all_r8"]
    paths = [lora_exports(n) for n in names]
    out = tmp_path / "batched.onnx"
    result = optimize_batched_variants(paths, out)
    assert len(result.batch.weights) == 7 * lm.LAYERS  # every linear layer of all_r8
    assert result.output_bytes <= 1.1 * (result.input_bytes[0] + result.factor_bytes)
    rows = [2, 1, 0, 1, 2]
    rng = np.random.default_rng(7)
    ids = rng.integers(0, lm.VOCAB, (len(rows), lm.SEQ), dtype=np.int64)
    mask = np.ones_like(ids)
    got = icl_onnx.create_session(str(out)).run(
        None, {"input_ids": ids, "attention_mask": mask, "variant_ids": np.array(rows)}
    )[0]
    for row, variant in enumerate(rows):
        feeds = {"input_ids": ids[row : row + 1], "attention_mask": mask[row : row + 1]}
        assert _relative(_alone(paths[variant], feeds), got[row : row + 1]) <= 1e-5


def test_lora_variants_with_a_changed_embedding_or_a_dense_mlp_are_refused(lora_exports, tmp_path):
    paths = [lora_exports(n) for n in ("base", "embed_r16", "qv_r8_dense_mlp")]
    with pytest.raises(IclUserError) as caught:
        optimize_batched_variants(paths, tmp_path / "out.onnx")
    message = str(caught.value)
    assert "embed_r16.onnx" in message and "read by Gather" in message
    assert "qv_r8_dense_mlp.onnx" in message and "not a low-rank delta" in message
    assert not (tmp_path / "out.onnx").exists()


def test_a_kv_cache_decoder_step_runs_each_row_with_its_variant(
    lora_exports, tmp_path, icl_library
):
    paths = [lora_exports(n, past=True) for n in ("base", "qv_r4", "all_r8")]
    out = tmp_path / "batched_past.onnx"
    optimize_batched_variants(paths, out)
    inputs = [i.name for i in onnx.load(str(out), load_external_data=False).graph.input]
    assert "past_key_values.0.key" in inputs and inputs[-1] == "variant_ids"
    # check builds a batch with a non-empty past per row and compares every output row
    report = check_batched_variants(out, paths, variant_ids=[2, 0, 1, 2], atol=1e-5, rtol=1e-5)
    assert report.passed, [(r.row, o.name, o.reason) for r in report.rows for o in r.outputs]
    assert report.inputs["past_key_values.0.key"]["shape"][0] == 4
    assert report.inputs["past_key_values.0.key"]["shape"][2] > 0
    assert {o.name for o in report.rows[0].outputs} >= {"logits", "present.0.key"}
