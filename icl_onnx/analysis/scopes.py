"""Graph scopes: which graph encloses which, so a shared tensor stays visible to its readers.

A subgraph (an ``If`` branch, a ``Loop`` or ``Scan`` body) may read the values of the graphs
that enclose it, never those of a graph it encloses or of a sibling. A canonical tensor must
therefore live in a graph that encloses every node that reads it: ``Scopes.home`` is the
lowest such graph. ONNX Runtime resolves an outer-scope reference by name, and a subgraph may
reuse an outer name for its own value, so a tensor read across graphs gets a name that no
other value of the model holds (``unique_name``).

ONNX functions hold no initializers and see nothing outside their own body, so their tensors
(``Constant`` nodes) take no part; ``function_constants`` reports them.
"""

from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Iterable

import onnx_ir as ir

from icl_onnx.analysis.findings import Skipped

__all__ = ["Scopes", "function_constants", "move_initializer"]

logger = logging.getLogger(__name__)


class Scopes:
    """The tree of a model's graphs: the main graph and every subgraph, at any depth.

    Built once on the model as analysed; the planner releases the names of the values the
    rewrite removes and reserves the names it gives (``destination``), so the names it plans
    are those the rewrite leaves. Subgraphs must not be added or removed.
    """

    def __init__(self, model: ir.Model) -> None:
        self.main = model.graph
        self._names: dict[str, set[ir.Value]] | None = None
        self._released: set[ir.Value] = set()
        self.parent: dict[ir.Graph, ir.Graph | None] = {model.graph: None}
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            for attr in node.attributes.values():
                if attr.type == ir.AttributeType.GRAPH:
                    self.parent[attr.value] = node.graph
                elif attr.type == ir.AttributeType.GRAPHS:
                    for sub in attr.value:
                        self.parent[sub] = node.graph

    def graphs(self) -> list[ir.Graph]:
        """Returns the main graph, then every subgraph in traversal order."""
        return list(self.parent)

    def chain(self, graph: ir.Graph) -> list[ir.Graph]:
        """Returns ``graph`` and the graphs that enclose it, innermost first."""
        out: list[ir.Graph] = []
        current: ir.Graph | None = graph
        while current is not None:
            out.append(current)
            current = self.parent[current]
        return out

    def encloses(self, outer: ir.Graph, nodes: Iterable[ir.Node]) -> bool:
        """Whether every node lies in ``outer`` or in a graph ``outer`` encloses."""
        return all(outer in self.chain(node.graph) for node in nodes)  # type: ignore[arg-type]

    def home(self, graphs: Iterable[ir.Graph]) -> ir.Graph:
        """Returns the innermost graph that encloses (or is) every graph in ``graphs``."""
        chains = [self.chain(g) for g in graphs]
        if not chains:
            return self.main
        common = set(chains[0]).intersection(*chains[1:])
        return next(g for g in chains[0] if g in common)

    def unique_name(self, value: ir.Value) -> str:
        """Returns ``value``'s name, or a new one if another value of the model holds it."""
        holders = self._holders()
        name = value.name or "shared"
        if holders.get(name, set()) <= {value}:
            return name
        return next(f"{name}_{i}" for i in itertools.count(1) if f"{name}_{i}" not in holders)

    def taken(self, name: str) -> bool:
        """Whether a value of any graph of the model (main graph or subgraph) has ``name``."""
        return bool(self._holders().get(name))

    def _holders(self) -> dict[str, set[ir.Value]]:
        """Name -> the values holding it (inputs, initializers, node outputs), built once."""
        if self._names is None:
            self._names = collections.defaultdict(set)
            for graph in self.graphs():
                values = itertools.chain(
                    graph.inputs,
                    graph.initializers.values(),
                    (v for node in graph for v in node.outputs),
                )
                for v in values:
                    if v.name and v not in self._released:
                        self._names[v.name].add(v)
        return self._names

    def release(self, values: Iterable[ir.Value]) -> None:
        """Frees the names of ``values``, which the rewrite removes."""
        self._released.update(values)
        if self._names is not None:
            for value in self._released:
                self._names.get(value.name or "", set()).discard(value)

    def destination(self, value: ir.Value, readers: Iterable[ir.Graph]) -> tuple[ir.Graph, str]:
        """Where the initializer ``value`` must live so ``readers`` see it, and its name there.

        The innermost graph that encloses its current graph and all its readers; a new name
        when it is read from another graph and another value of the model holds its name. The
        name is reserved, so later calls see it taken.
        """
        graph = value.graph
        assert graph is not None and value.name in graph.initializers
        readers = set(readers)
        home = self.home([graph, *readers])
        if readers <= {graph} and home is graph:
            return graph, value.name  # type: ignore[return-value]
        name = self.unique_name(value)
        self.reserve(value, name)
        return home, name

    def reserve(self, value: ir.Value, name: str) -> None:
        """Records that ``value`` will hold ``name`` (and no longer its current name)."""
        holders = self._holders()
        holders.get(value.name or "", set()).discard(value)
        holders[name].add(value)

    def free_name(self, name: str, suffix: str) -> str:
        """``name``, or ``name`` followed by ``suffix`` as often as needed to be a free name."""
        while self.taken(name):
            name = f"{name}{suffix}"
        return name


def move_initializer(value: ir.Value, home: ir.Graph, name: str) -> bool:
    """Moves the initializer ``value`` to ``home`` under ``name``; returns whether it changed."""
    graph = value.graph
    assert graph is not None and value.name in graph.initializers
    if home is graph and name == value.name:
        return False
    old_name = value.name
    graph.initializers.pop(old_name)  # type: ignore[arg-type]
    value.name = name
    home.register_initializer(value)
    logger.info("shared tensor %s placed in graph %s as %s", old_name, home.name or "main", name)
    return True


def function_constants(model: ir.Model, min_elements: int) -> list[Skipped]:
    """Reports the large ``Constant`` tensors of ONNX functions, which are never shared."""
    skipped = []
    for function in model.functions.values():
        for node in ir.traversal.RecursiveGraphIterator(function):
            if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
                continue
            attr = node.attributes.get("value")
            if attr is None or attr.type != ir.AttributeType.TENSOR:
                continue
            if attr.value.size >= min_elements:
                name = node.outputs[0].name or node.name or "?"
                skipped.append(
                    Skipped(
                        name,
                        f"Constant in function {function.name} (functions hold no "
                        "initializers and cannot read the main graph's)",
                    )
                )
    return skipped
