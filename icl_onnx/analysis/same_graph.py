"""Whether two models have the same graph, and which of their initializers hold other values.

Fine-tuned variants of one base exported the same way have the same graph: the same inputs and
outputs, the same nodes in the same order (op, domain, attributes, how they are wired) and
initializers in the same places; only initializer values differ. ``match_graphs`` walks both
graphs (subgraphs included) node by node, pairing every value of one with the value of the
other that sits in the same place, and returns the initializer pairs whose contents differ, or
the first place where the graphs differ. Initializer names may differ; values are compared byte
for byte. Pure: nothing is changed or printed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

__all__ = ["GraphMatch", "match_graphs"]


@dataclasses.dataclass
class GraphMatch:
    """Two models' graphs compared.

    Attributes:
        difference: the first place where the graphs differ ("" when they are the same).
        differing: ``(base initializer, variant initializer)`` pairs in the same place whose
            contents differ, in the order the walk meets them.
    """

    difference: str = ""
    differing: list[tuple[ir.Value, ir.Value]] = dataclasses.field(default_factory=list)

    @property
    def same(self) -> bool:
        """Whether the graphs are the same up to initializer values."""
        return not self.difference


class _Differ(Exception):
    """The graphs differ (internal: the message is the first difference)."""


def _type_text(value: ir.Value) -> str:
    shape = "?" if value.shape is None else str(value.shape)
    return f"{value.type}{shape}"


def _same_bytes(a: ir.TensorProtocol, b: ir.TensorProtocol) -> bool:
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    x, y = np.asarray(a.numpy()), np.asarray(b.numpy())
    return np.array_equal(x.reshape(-1).view(np.uint8), y.reshape(-1).view(np.uint8))


class _Walk:
    """Pairs the values of two graphs as the node-by-node walk meets them."""

    def __init__(self) -> None:
        self.pairs: dict[ir.Value, ir.Value] = {}
        self.differing: list[tuple[ir.Value, ir.Value]] = []
        self.subgraphs: list[tuple[ir.Graph, ir.Graph, str]] = []

    def pair(self, a: ir.Value | None, b: ir.Value | None, where: str) -> None:
        if a is None or b is None:
            if a is not b:
                raise _Differ(f"{where}: one model has an input the other leaves empty")
            return
        known = self.pairs.get(a)
        if known is not None:
            if known is not b:
                raise _Differ(f"{where}: reads {b.name!r} where the base reads {a.name!r}")
            return
        if a.producer() is not None or b.producer() is not None:
            raise _Differ(f"{where}: reads {b.name!r} where the base reads {a.name!r}")
        if a.is_initializer() != b.is_initializer():
            raise _Differ(f"{where}: {a.name!r} and {b.name!r} are not both initializers")
        if a.is_initializer():
            self._initializer(a, b, where)
        elif not _same_graph_input(a, b):
            raise _Differ(f"{where}: reads {b.name!r} where the base reads {a.name!r}")
        self.pairs[a] = b

    def _initializer(self, a: ir.Value, b: ir.Value, where: str) -> None:
        ta, tb = a.const_value, b.const_value
        if ta is None or tb is None:
            raise _Differ(f"{where}: initializer {a.name!r} or {b.name!r} has no value")
        if ta.dtype != tb.dtype or tuple(ta.shape) != tuple(tb.shape):
            raise _Differ(
                f"{where}: initializer {b.name!r} is {tb.dtype.name}{list(tb.shape)}, "
                f"the base's {a.name!r} {ta.dtype.name}{list(ta.shape)}"
            )
        if not _same_bytes(ta, tb):
            self.differing.append((a, b))


def _same_graph_input(a: ir.Value, b: ir.Value) -> bool:
    ga, gb = a.graph, b.graph
    if ga is None or gb is None or a not in ga.inputs or b not in gb.inputs:
        return False
    return list(ga.inputs).index(a) == list(gb.inputs).index(b)


def _signature(graph: ir.Graph, kind: str) -> list[str]:
    values = graph.inputs if kind == "inputs" else graph.outputs
    return [f"{v.name}: {_type_text(v)}" for v in values]


def _compare_io(a: ir.Graph, b: ir.Graph, walk: _Walk) -> None:
    for kind in ("inputs", "outputs"):
        mine, theirs = _signature(a, kind), _signature(b, kind)
        if mine != theirs:
            first = next(
                (
                    f"{x} against the base's {y}"
                    for x, y in zip(theirs, mine, strict=False)
                    if x != y
                ),
                f"{len(theirs)} against the base's {len(mine)}",
            )
            raise _Differ(f"graph {kind} differ: {first}")
    for x, y in zip(a.inputs, b.inputs, strict=True):
        if not x.is_initializer():  # an initializer listed as an input is compared by value
            walk.pairs[x] = y


def _attribute_value(attr: ir.Attr) -> object:
    if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
        return None  # subgraphs are walked node by node
    if attr.type == ir.AttributeType.TENSOR:
        return attr.value.tobytes()
    if attr.type == ir.AttributeType.TENSORS:
        return [t.tobytes() for t in attr.value]
    return attr.value


def _op(node: ir.Node) -> str:
    return f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type


def _compare_node(index: int, a: ir.Node, b: ir.Node, walk: _Walk) -> None:
    where = f"node {index} ({_op(a)}{f' {a.name!r}' if a.name else ''})"
    if (a.domain, a.op_type, a.overload) != (b.domain, b.op_type, b.overload):
        raise _Differ(f"{where}: the variant has {_op(b)} there")
    if set(a.attributes) != set(b.attributes):
        raise _Differ(f"{where}: attributes {sorted(a.attributes)} against {sorted(b.attributes)}")
    for name, attr in a.attributes.items():
        if _attribute_value(attr) != _attribute_value(b.attributes[name]):
            raise _Differ(f"{where}: attribute {name} differs")
        if attr.type == ir.AttributeType.GRAPH:
            _pair_subgraph_inputs([attr.value], [b.attributes[name].value], where, walk)
        elif attr.type == ir.AttributeType.GRAPHS:
            _pair_subgraph_inputs(attr.value, b.attributes[name].value, where, walk)
    if len(a.inputs) != len(b.inputs) or len(a.outputs) != len(b.outputs):
        raise _Differ(f"{where}: a different number of inputs or outputs")
    for i, (x, y) in enumerate(zip(a.inputs, b.inputs, strict=True)):
        walk.pair(x, y, f"{where} input {i}")
    for x, y in zip(a.outputs, b.outputs, strict=True):
        walk.pairs[x] = y


def _pair_subgraph_inputs(mine, theirs, where: str, walk: _Walk) -> None:
    if len(mine) != len(theirs):
        raise _Differ(f"{where}: a different number of subgraphs")
    for ga, gb in zip(mine, theirs, strict=True):
        if len(ga.inputs) != len(gb.inputs) or len(ga.outputs) != len(gb.outputs):
            raise _Differ(f"{where}: a subgraph with other inputs or outputs")
        for x, y in zip(ga.inputs, gb.inputs, strict=True):
            walk.pairs[x] = y
        walk.subgraphs.append((ga, gb, f"a subgraph of {where}"))


def _compare_outputs(a: ir.Graph, b: ir.Graph, walk: _Walk, where: str) -> None:
    for i, (x, y) in enumerate(zip(a.outputs, b.outputs, strict=True)):
        walk.pair(x, y, f"{where} output {i} ({x.name!r})")


def _compare_model(a: ir.Model, b: ir.Model) -> None:
    if dict(a.opset_imports) != dict(b.opset_imports):
        raise _Differ(f"opset imports {dict(b.opset_imports)} against {dict(a.opset_imports)}")
    if set(a.functions) != set(b.functions):
        raise _Differ("the models define other functions")
    for key, function in a.functions.items():  # bodies compared as text (weights included)
        if str(function) != str(b.functions[key]):
            raise _Differ(f"function {function.name} differs")


def match_graphs(base: ir.Model, variant: ir.Model) -> GraphMatch:
    """Compares ``variant``'s graph with ``base``'s, subgraphs included.

    Returns:
        The first difference (opset imports, functions, inputs or outputs by name and type,
        node count, a node's op, attributes or wiring, an initializer's dtype or shape), or the
        initializer pairs whose values differ.
    """
    walk = _Walk()
    try:
        _compare_model(base, variant)
        _compare_io(base.graph, variant.graph, walk)
        mine = list(ir.traversal.RecursiveGraphIterator(base.graph))
        theirs = list(ir.traversal.RecursiveGraphIterator(variant.graph))
        if len(mine) != len(theirs):
            raise _Differ(f"{len(theirs)} nodes against the base's {len(mine)}")
        for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            _compare_node(index, a, b, walk)
        for ga, gb, where in walk.subgraphs:  # once every value is paired
            _compare_outputs(ga, gb, walk, where)
        _compare_outputs(base.graph, variant.graph, walk, "graph")
    except _Differ as e:
        return GraphMatch(difference=str(e))
    return GraphMatch(differing=walk.differing)
