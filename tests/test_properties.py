"""Property-based tests: random small graphs with planted copies of one weight, then optimize.

Each example plants copies and views of a random matrix ``W`` (exact and transposed
initializers, ``Constant`` nodes, ``Transpose(W)`` nodes, row/column slices, scaled copies
``c·W`` and float16 casts, the last three plain or transposed), each read by a random consumer:
MatMul, Gemm (transB 0/1, alpha), Gather (all covered by an ICL op), or Add/Neg (no ICL op
covers them).
After ``icl_onnx.optimize`` the model must pass ``onnx.checker`` (full check), compute the
same outputs as the original in the reference evaluator, and keep no copy an ICL op could
have covered: at most one remaining copy (the canonical one) has only covered consumers, and
every remaining ``Transpose`` feeds only uncovered consumers.

Each plant (and the consumer of ``W``) also lives at a drawn level: the main graph, or the
``then_branch`` of one ``If`` in the main graph (copy and consumer inside the branch, reading
the outer ``W`` where a plant needs it). The ``else_branch`` computes the same outputs from the
main graph's ``W`` with ONNX ops (``Transpose``, ``Slice``, ``Mul``, ``Cast``) and the same
consumers, and the model is evaluated with the ``If`` condition True and False. The properties
hold over every graph of the model: a copy's consumers are the nodes of any graph reading it
(through a ``Transpose``, the nodes reading that), and the one canonical copy is per model.
"""

from __future__ import annotations

import copy
import dataclasses
import os

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

import icl_onnx
from icl_onnx.reference import evaluator

MIN_ELEMENTS = 8  # a slice of two rows of a 4x4 matrix still takes part
COVERED = ("MatMul", "Gemm", "Gather")
CONSUMERS = (*COVERED, "Add", "Neg")
SOURCES = ("initializer", "transposed initializer", "constant", "transposed constant")
VIEWS = (
    "row slice",
    "column slice",
    "transposed row slice",
    "scaled initializer",
    "transposed scaled initializer",
    "cast initializer",
    "transposed cast initializer",
)
PLANTS = (*SOURCES, "transpose node", *VIEWS)
LEVELS = ("main", "branch")  # the main graph, or the then_branch of the If in the main graph
COND = "c"  # the If's condition, a bool graph input
SCALES = (-1.0, 0.5, 3.0, -0.25)
EXAMPLES = {"run": 0}

#: ICL_PROPERTY_EXAMPLES=N runs N random (not derandomized) examples: a wider search by hand.
_SEARCH = int(os.environ.get("ICL_PROPERTY_EXAMPLES", "0"))
SETTINGS = settings(
    max_examples=_SEARCH or 100,
    deadline=None,
    derandomize=not _SEARCH,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclasses.dataclass(frozen=True)
class Plant:
    """One copy of W and the node that reads it."""

    kind: str
    consumer: str
    trans_b: int
    alpha: float
    start: int = 0  # slices: first row/column (clipped to the matrix)
    size: int = 2  # slices: rows/columns kept (clipped so the slice is strictly smaller)
    scale: float = 1.0  # scaled copies
    level: str = "main"  # "main" or "branch": where the copy and its consumer live


plants = st.builds(
    Plant,
    kind=st.sampled_from(PLANTS),
    consumer=st.sampled_from(CONSUMERS),
    trans_b=st.integers(0, 1),
    alpha=st.sampled_from([1.0, 0.5, 2.0]),
    start=st.integers(0, 8),
    size=st.integers(2, 8),
    scale=st.sampled_from(SCALES),
    level=st.sampled_from(LEVELS),
)


@dataclasses.dataclass
class Case:
    """A generated model, its feeds and which tensors hold a copy of W."""

    proto: onnx.ModelProto
    feeds: dict[str, np.ndarray]  # without the If condition
    copies: list[str]  # initializer / Constant output names holding W or a view of it
    consumer_of: dict[str, str]  # copy or planted Transpose output -> op type reading it
    kind_of: dict[str, str]  # copy or planted Transpose output -> planted kind
    level_of: dict[str, str]  # copy or planted Transpose output -> "main" or "branch"
    transposes: list[str] = dataclasses.field(default_factory=list)  # planted Transpose outputs

    @property
    def conditions(self) -> list[bool | None]:
        """The If condition values to evaluate (None: the model has no If)."""
        inputs = {i.name for i in self.proto.graph.input}
        return [True, False] if COND in inputs else [None]

    def feeds_for(self, cond: bool | None) -> dict[str, np.ndarray]:
        return self.feeds if cond is None else {**self.feeds, COND: np.array(cond)}


def _consumer(
    i: int, plant: Plant, weight: str, shape: tuple[int, int], rng, dtype=np.float32
) -> tuple:
    """Returns (nodes, inputs, feeds, output) for ``plant.consumer`` reading ``weight``."""
    m, n = shape
    out, x = f"y{i}", f"x{i}"
    elem = h.np_dtype_to_tensor_dtype(np.dtype(dtype))
    if plant.consumer == "MatMul":
        node = h.make_node("MatMul", [x, weight], [out])
        feed, oshape = rng.standard_normal((2, m)), [2, n]
    elif plant.consumer == "Gemm":
        k, oshape = (n, [2, m]) if plant.trans_b else (m, [2, n])
        node = h.make_node("Gemm", [x, weight], [out], transB=plant.trans_b, alpha=plant.alpha)
        feed = rng.standard_normal((2, k))
    elif plant.consumer == "Gather":
        node = h.make_node("Gather", [weight, x], [out])
        ids = rng.integers(0, m, size=(3,))
        return (
            [node],
            [h.make_tensor_value_info(x, TensorProto.INT64, [3])],
            {x: ids},
            (h.make_tensor_value_info(out, elem, [3, n])),
        )
    elif plant.consumer == "Add":
        node = h.make_node("Add", [weight, x], [out])
        feed, oshape = rng.standard_normal((m, n)), [m, n]
    else:
        out_info = h.make_tensor_value_info(out, elem, [m, n])
        return [h.make_node("Neg", [weight], [out])], [], {}, out_info
    feed = feed.astype(dtype)
    info = h.make_tensor_value_info(x, elem, list(feed.shape))
    return [node], [info], {x: feed}, h.make_tensor_value_info(out, elem, oshape)


def _slice_of(plant: Plant, shape: tuple[int, int]) -> tuple[int, int, int]:
    """Returns (axis of W, start, size) of a slice plant, clipped to W's ``shape``."""
    axis = 1 if plant.kind == "column slice" else 0
    dim = shape[axis]
    size = min(plant.size, dim - 1)
    start = min(plant.start, dim - size)
    return axis, start, size


def _view_value(w: np.ndarray, plant: Plant) -> np.ndarray:
    """The planted slice, scaled copy or cast of ``w`` (a new contiguous array)."""
    if plant.kind.endswith("slice"):
        axis, start, size = _slice_of(plant, w.shape)
        part = w[start : start + size] if axis == 0 else w[:, start : start + size]
        return np.ascontiguousarray(part.T if plant.kind.startswith("transposed") else part)
    src = w.T if plant.kind.startswith("transposed") else w
    if "scaled" in plant.kind:
        return np.ascontiguousarray(src * np.float32(plant.scale))
    return np.ascontiguousarray(src.astype(np.float16))


def _from_w(i: int, plant: Plant, shape: tuple[int, int]) -> tuple[list, str]:
    """Nodes computing ``plant``'s value from the outer ``w`` with ONNX ops, and their output.

    The else_branch's counterpart of a branch plant: ``Transpose(w)`` first (for transposed
    kinds), then ``Slice``, ``Mul`` by the scale, or ``Cast`` to float16.
    """
    nodes, src, kind = [], "w", plant.kind
    transposed = kind.startswith("transposed") or kind == "transpose node"
    if transposed:
        nodes.append(h.make_node("Transpose", ["w"], [f"e{i}_t"], perm=[1, 0]))
        src = f"e{i}_t"
    if kind.endswith("slice"):
        axis, start, size = _slice_of(plant, shape)
        axis = 1 - axis if transposed else axis  # rows of W are columns of W^T
        for part, value in (("starts", start), ("ends", start + size), ("axes", axis)):
            nodes.append(h.make_node("Constant", [], [f"e{i}_{part}"], value_ints=[value]))
        parts = [f"e{i}_{part}" for part in ("starts", "ends", "axes")]
        nodes.append(h.make_node("Slice", [src, *parts], [f"e{i}_v"]))
    elif "scaled" in kind:
        scale = nh.from_array(np.array(plant.scale, np.float32), f"e{i}_c")
        nodes.append(h.make_node("Constant", [], [f"e{i}_c"], value=scale))
        nodes.append(h.make_node("Mul", [src, f"e{i}_c"], [f"e{i}_v"]))
    elif "cast" in kind:
        nodes.append(h.make_node("Cast", [src], [f"e{i}_v"], to=TensorProto.FLOAT16))
    else:
        return nodes, src
    return nodes, f"e{i}_v"


def _renamed(nodes: list, renames: dict[str, str]) -> list:
    """Copies of ``nodes`` with inputs and outputs renamed."""
    out = []
    for node in nodes:
        node = copy.deepcopy(node)
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
        out.append(node)
    return out


def _info(info: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    info = copy.deepcopy(info)
    info.name = name
    return info


def build_case(rows: int, cols: int, seed: int, base: Plant, planted: list[Plant]) -> Case:
    """``w`` (read by ``base.consumer``) and one copy per planted item, each with a consumer.

    Items at level "branch" put their copy and consumer in the then_branch of one If (outputs
    ``y{i}_t``); its else_branch computes each from ``w`` (outputs ``y{i}_e``).
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    main = {"nodes": [], "inits": [nh.from_array(w, "w")]}
    then = {"nodes": [], "inits": []}
    inputs, outputs, feeds = [], [], {}
    then_out, else_out, else_nodes, if_out = [], [], [], []
    copies, consumer_of, kind_of = ["w"], {"w": base.consumer}, {"w": "initializer"}
    level_of, transposes = {"w": base.level}, []  # w itself is in main; its consumer may not
    items = [("w", (rows, cols), base)]
    for i, plant in enumerate(planted, start=1):
        name = f"p{i}"
        home = then if plant.level == "branch" else main
        transposed = plant.kind.startswith("transposed") or plant.kind == "transpose node"
        value = np.ascontiguousarray(w.T) if transposed else w.copy()
        if plant.kind in VIEWS:
            value = _view_value(w, plant)
            home["inits"].append(nh.from_array(value, name))
        elif plant.kind.endswith("initializer"):
            home["inits"].append(nh.from_array(value, name))
        elif plant.kind.endswith("constant"):
            constant = h.make_node("Constant", [], [name], value=nh.from_array(value, name))
            home["nodes"].append(constant)
        else:
            home["nodes"].append(h.make_node("Transpose", ["w"], [name], perm=[1, 0]))
            transposes.append(name)
        if plant.kind != "transpose node":
            copies.append(name)
        consumer_of[name], kind_of[name], level_of[name] = plant.consumer, plant.kind, plant.level
        items.append((name, value.shape, plant))
    dtypes = {i.name: nh.to_array(i).dtype for i in main["inits"] + then["inits"]}
    consumers_main, consumers_then = [], []
    for i, (weight, shape, plant) in enumerate(items):
        dtype = dtypes.get(weight, np.float32)
        more_nodes, more_inputs, more_feeds, output = _consumer(i, plant, weight, shape, rng, dtype)
        inputs += more_inputs
        feeds.update(more_feeds)
        outputs.append(output)
        if plant.level == "main":
            consumers_main += more_nodes
            continue
        y = output.name
        consumers_then += _renamed(more_nodes, {y: f"{y}_t"})
        then_out.append(_info(output, f"{y}_t"))
        src_nodes, src = _from_w(i, plant, (rows, cols)) if i else ([], "w")
        else_nodes += src_nodes + _renamed(more_nodes, {weight: src, y: f"{y}_e"})
        else_out.append(_info(output, f"{y}_e"))
        if_out.append(y)
    nodes = main["nodes"] + consumers_main
    if if_out:
        then_graph = h.make_graph(
            then["nodes"] + consumers_then, "then", [], then_out, then["inits"]
        )
        else_graph = h.make_graph(else_nodes, "else", [], else_out)
        nodes.append(
            h.make_node("If", [COND], if_out, then_branch=then_graph, else_branch=else_graph)
        )
        inputs.append(h.make_tensor_value_info(COND, TensorProto.BOOL, []))
    graph = h.make_graph(nodes, "planted", inputs, outputs, main["inits"])
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    proto.ir_version = 9
    return Case(proto, feeds, copies, consumer_of, kind_of, level_of, transposes)


def optimized(proto: onnx.ModelProto) -> onnx.ModelProto:
    model = ir.from_proto(proto)
    icl_onnx.optimize(model, min_elements=MIN_ELEMENTS)
    return ir.to_proto(model)


def all_graphs(graph: onnx.GraphProto):
    """Yields ``graph`` and every subgraph of its nodes, at any depth."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from all_graphs(sub)


def all_nodes(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [node for g in all_graphs(proto.graph) for node in g.node]


def tensors(proto: onnx.ModelProto) -> set[str]:
    """Names of the initializers and Constant outputs of every graph of the model."""
    graphs = list(all_graphs(proto.graph))
    names = {i.name for g in graphs for i in g.initializer}
    return names | {o for n in all_nodes(proto) if n.op_type == "Constant" for o in n.output}


def readers(proto: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Value name -> the nodes of any graph that read it (names are unique in these models)."""
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in all_nodes(proto):
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def reader_ops(name: str, read: dict[str, list[onnx.NodeProto]]) -> set[str]:
    """Op types reading ``name``, a ``Transpose`` replaced by the ops reading its output."""
    ops = set()
    for node in read.get(name, []):
        if node.op_type == "Transpose":
            ops |= {n.op_type for n in read.get(node.output[0], [])}
        else:
            ops.add(node.op_type)
    return ops


@SETTINGS
@given(
    rows=st.integers(4, 9),
    cols=st.integers(4, 9),
    seed=st.integers(0, 2**16),
    base=plants,
    planted=st.lists(plants, min_size=1, max_size=4),
)
def test_planted_copies_are_shared_where_covered_and_outputs_match(rows, cols, seed, base, planted):
    EXAMPLES["run"] += 1
    for line in check_case(build_case(rows, cols, seed, base, planted)):
        event(line)


def check_case(case: Case) -> list[str]:
    """Asserts the properties of the module docstring over every graph of the model.

    Returns the statistics events: each plant's level, kind, consumer and fate.
    """
    onnx.checker.check_model(case.proto, full_check=True)
    out = optimized(case.proto)
    onnx.checker.check_model(out, full_check=True)

    before, after = readers(case.proto), readers(out)
    remaining = tensors(out)
    left = [c for c in case.copies if c in remaining]
    dead = [c for c in left if c not in after]
    assert not dead, f"copies left without any reader: {dead}"
    assert left, "every copy was removed, the canonical one too"
    produced = {o for n in all_nodes(out) for o in n.output}
    events = [f"{case.level_of['w']}: W's own consumer"]
    for name in case.copies[1:] + case.transposes:
        if name in case.transposes:
            fate = "kept" if name in produced else "folded"
        else:
            fate = "removed" if name not in remaining else "kept"
        events.append(
            f"{case.level_of[name]}: {case.kind_of[name]}, {case.consumer_of[name]}: {fate}"
        )
    # A copy whose readers (through Transpose nodes) an ICL op all covers must go, but one.
    coverable = [c for c in left if reader_ops(c, before) <= set(COVERED)]
    assert len(coverable) <= 1, f"copies an ICL op covers survived: {coverable}"
    for node in all_nodes(out):
        if node.op_type == "Transpose":
            ops = {n.op_type for n in after.get(node.output[0], [])}
            assert not ops & set(COVERED), (node.output[0], ops)

    for cond in case.conditions:
        feeds = case.feeds_for(cond)
        want = evaluator(case.proto).run(None, feeds)
        got = evaluator(out).run(None, feeds)
        for a, b in zip(want, got, strict=True):
            # A float16 consumer reading the float32 W rounds once instead of in float16
            # arithmetic.
            tol = 2e-2 if a.dtype == np.float16 else 1e-5
            np.testing.assert_allclose(
                b.astype(np.float32), a.astype(np.float32), rtol=tol, atol=tol, err_msg=str(cond)
            )
    return events


def test_the_source_of_a_folded_transpose_does_not_stay_behind():
    """W (MatMul), W^T (MatMul) and Transpose(W) (Gather): W^T is canonical, W must go."""
    planted = [
        Plant("transposed initializer", "MatMul", 0, 1.0),
        Plant("transpose node", "Gather", 0, 1.0),
    ]
    case = build_case(4, 4, 0, Plant("initializer", "MatMul", 0, 1.0), planted)
    out = optimized(case.proto)
    assert [i.name for i in out.graph.initializer] == ["p1"]


TWO_TRANSPOSED_VIEWS = {
    "scaled": [
        Plant("transposed scaled initializer", "MatMul", 0, 1.0, scale=-1.0),
        Plant("transposed scaled initializer", "MatMul", 0, 1.0, scale=0.5),
    ],
    "row-slices": [
        Plant("transposed row slice", "MatMul", 0, 1.0, start=0, size=2),
        Plant("transposed row slice", "MatMul", 0, 1.0, start=0, size=3),
    ],
}


@pytest.mark.parametrize("views", list(TWO_TRANSPOSED_VIEWS))
def test_two_transposed_views_of_w_are_both_shared(views):
    """W 4x4 (MatMul) and two transposed views of it, each read by a MatMul: only W stays.

    Found by the property test run with more examples: each view first matched its sibling
    (``-0.5 * p1``; a column slice of the other slice), a chain that does not compose, and the
    view's own relation to W was never tried.
    """
    case = build_case(4, 4, 0, Plant("initializer", "MatMul", 0, 1.0), TWO_TRANSPOSED_VIEWS[views])
    out = optimized(case.proto)
    for cond in case.conditions:  # the outputs match: sharing is missed, nothing is wrong
        want = evaluator(case.proto).run(None, case.feeds_for(cond))
        got = evaluator(out).run(None, case.feeds_for(cond))
        for a, b in zip(want, got, strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    assert [i.name for i in out.graph.initializer] == ["w"]


def test_the_property_test_ran_its_examples():
    """Runs after the property test (file order); fails if it ran no example."""
    if EXAMPLES["run"] == 0:  # collected alone with -k: run the property once more
        test_planted_copies_are_shared_where_covered_and_outputs_match()
    print(f"property examples run: {EXAMPLES['run']}")
    assert EXAMPLES["run"] >= SETTINGS.max_examples // 2
