"""Finds initializers that are copies or views of another and plans how to share them.

Every eligible initializer is sampled at positions fixed by its shape (``probes.py``); tensors
whose dtype, shape and samples match are fingerprinted in one streaming pass
(``fingerprint.py``), tensors whose samples match another's transpose are candidates, and every
candidate is verified on its values (``verify.py``) and joined in a union-find that tracks
whether each tensor is transposed relative to its set's root. ``Transpose`` nodes reading an
initializer join the set of that initializer as view members. Sets whose representative is a
slice, scaled copy or dtype-cast copy of another set's (``derive.py``) join that set with the
composed view. For each set a canonical initializer is chosen among the copies of the widest
tensor so that the fewest consumers need an ICL operator, and each consumer of every other
member is planned (``consumers.py``).
"""

from __future__ import annotations

import collections
import dataclasses
import logging

import onnx_ir as ir

from icl_onnx import progress
from icl_onnx.analysis.consumers import gemm_view, node_label, plan_consumer
from icl_onnx.analysis.derive import find_derived, resolve
from icl_onnx.analysis.fingerprint import exact_digest, multiset_key
from icl_onnx.analysis.plan import Consumer, Member, ShareGroup, SharePlan, Skipped, View
from icl_onnx.analysis.scopes import Scopes, function_constants
from icl_onnx.analysis.tensors import TensorCache
from icl_onnx.analysis.verify import is_exact_copy, is_transposed_copy
from icl_onnx.ops import GATHER, MATMUL

__all__ = ["analyze", "run_analysis", "Analysis", "MemberBinding", "GroupBinding"]

logger = logging.getLogger(__name__)

#: Initializers with fewer elements are not worth sharing.
DEFAULT_MIN_ELEMENTS = 1024
#: Transposed-copy candidates verified per tensor at most.
_MAX_BUCKET = 8


@dataclasses.dataclass
class MemberBinding:
    """A planned member with the IR objects the rewrite needs."""

    value: ir.Value
    view: View
    view_node: ir.Node | None  # the Transpose node whose output this member is
    uses: list[tuple[ir.Node, int, Consumer]]
    plan: Member


@dataclasses.dataclass
class GroupBinding:
    """A planned group with the IR objects the rewrite needs."""

    canonical: ir.Value
    members: list[MemberBinding]
    canonical_uses: list[tuple[ir.Node, int, Consumer]]
    plan: ShareGroup


@dataclasses.dataclass
class Analysis:
    """The plan and, for the pass, its binding to the IR."""

    plan: SharePlan
    groups: list[GroupBinding]


class _UnionFind:
    """Union-find over values, tracking each value's transpose parity to its root."""

    def __init__(self) -> None:
        self.parent: dict[ir.Value, ir.Value] = {}
        self.parity: dict[ir.Value, bool] = {}

    def add(self, v: ir.Value) -> None:
        self.parent.setdefault(v, v)
        self.parity.setdefault(v, False)

    def find(self, v: ir.Value) -> tuple[ir.Value, bool]:
        parity = False
        root = v
        while self.parent[root] is not root:
            parity ^= self.parity[root]
            root = self.parent[root]
        return root, parity

    def union(self, a: ir.Value, b: ir.Value, transposed: bool) -> None:
        """Records ``b == transpose?(a)``."""
        ra, pa = self.find(a)
        rb, pb = self.find(b)
        if ra is rb:
            return
        self.parent[rb] = ra
        self.parity[rb] = pa ^ pb ^ transposed


def _eligible(
    graph: ir.Graph, min_elements: int, *, main: bool = True
) -> tuple[list[ir.Value], list[Skipped]]:
    """Returns the initializers of ``graph`` that may be shared, and why the others may not."""
    inputs, outputs = set(graph.inputs), set(graph.outputs)
    where = "graph" if main else f"subgraph {graph.name}"
    eligible, skipped = [], []
    for value in graph.initializers.values():
        tensor = value.const_value
        if tensor is None:
            skipped.append(Skipped(value.name or "?", "initializer without a value"))
        elif tensor.size < min_elements:
            continue
        elif value in inputs:
            why = "graph input (can be overridden at run time)" if main else f"input of {where}"
            skipped.append(Skipped(value.name or "?", why))
        elif value in outputs:
            skipped.append(Skipped(value.name or "?", f"output of {where}"))
        elif tensor.dtype.is_string() or tensor.dtype.itemsize not in (1, 2, 4, 8):
            skipped.append(Skipped(value.name or "?", f"dtype {tensor.dtype.name}"))
        else:
            eligible.append(value)
    return eligible, skipped


def _digest_groups(values: list[ir.Value], cache: TensorCache) -> list[list[ir.Value]]:
    """Groups values that are probably exact copies: same dtype, shape, samples and digest.

    Only values that share dtype, shape and samples with another are read in full.
    """
    by_samples: dict[tuple, list[ir.Value]] = collections.defaultdict(list)
    for value in values:
        key = (cache.dtype(value), cache.shape(value), cache.probes(value).key())
        by_samples[key].append(value)
    crowded = [same for same in by_samples.values() if len(same) > 1]
    total = sum(v.const_value.nbytes for same in crowded for v in same)  # type: ignore[union-attr]
    groups: list[list[ir.Value]] = []
    if not crowded:
        return groups
    with progress.task("fingerprinting", total) as advance:
        for same in crowded:
            by_digest: dict[str, list[ir.Value]] = collections.defaultdict(list)
            for value in same:
                by_digest[exact_digest(cache.array(value))].append(value)
                advance(value.const_value.nbytes)  # type: ignore[union-attr]
            groups += [g for g in by_digest.values() if len(g) > 1]
    return groups


def _transposed_candidates(roots: list[ir.Value], cache: TensorCache):
    """Yields ``(a, b)`` pairs of 2-D roots whose samples say ``b`` may be ``a.T``."""
    two_d = [v for v in roots if len(cache.shape(v)) == 2]
    by_samples: dict[tuple, list[ir.Value]] = collections.defaultdict(list)
    shapes = collections.Counter((cache.dtype(v), tuple(sorted(cache.shape(v)))) for v in two_d)
    for v in two_d:
        if shapes[(cache.dtype(v), tuple(sorted(cache.shape(v))))] > 1:
            by_samples[(cache.dtype(v), cache.shape(v), cache.probes(v).key())].append(v)
    multisets: dict[ir.Value, int] = {}

    def multiset(v: ir.Value) -> int:
        if v not in multisets:
            multisets[v] = multiset_key(cache.array(v))
        return multisets[v]

    for a in two_d:
        key = (cache.dtype(a), cache.shape(a)[::-1], cache.probes(a).key(transposed=True))
        bucket = [b for b in by_samples.get(key, []) if b is not a]
        if len(bucket) > _MAX_BUCKET:  # repeated values at every sample: split by content
            mine = multiset(a)
            bucket = [b for b in bucket if multiset(b) == mine]
        for b in bucket[:_MAX_BUCKET]:
            yield a, b


def _join_copies(values: list[ir.Value], cache: TensorCache) -> _UnionFind:
    """Joins verified exact and transposed copies in a union-find."""
    uf = _UnionFind()
    for value in values:
        uf.add(value)
    for same in _digest_groups(values, cache):
        head = same[0]
        for other in same[1:]:
            if is_exact_copy(cache.array(head), cache.array(other)):
                uf.union(head, other, transposed=False)
    roots = [v for v in values if uf.find(v)[0] is v]
    for a, b in _transposed_candidates(roots, cache):
        if uf.find(a)[0] is not uf.find(b)[0]:
            if is_transposed_copy(cache.array(a), cache.array(b)):
                uf.union(a, b, transposed=True)
    return uf


def _transpose_views(graph: ir.Graph, eligible: set[ir.Value]) -> list[ir.Node]:
    """Returns 2-D Transpose nodes (in ``graph`` or a subgraph) reading an eligible initializer."""
    nodes = []
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if node.op_type != "Transpose" or node.domain not in ("", "ai.onnx"):
            continue
        source = node.inputs[0] if node.inputs else None
        if source not in eligible or len(source.const_value.shape) != 2:  # type: ignore[union-attr]
            continue
        perm = node.attributes.get("perm")
        if perm is None or list(perm.value) == [1, 0]:
            nodes.append(node)
    return nodes


def _canonical_use_plan(node: ir.Node, index: int) -> Consumer:
    """A use of the canonical tensor: MatMul/Gemm weights move to IclMatMul (no prepacked copy)."""
    if node.domain in ("", "ai.onnx") and index == 1 and node.op_type in ("MatMul", "Gemm"):
        if node.op_type == "MatMul" or gemm_view(node, View())[0] is not None:
            return Consumer(node_label(node), node.op_type, index, MATMUL)
    return Consumer(node_label(node), node.op_type, index, "keep")


def _cost(consumers: list[Consumer], views: list[View]) -> int:
    cost = 0
    for consumer, view in zip(consumers, views, strict=True):
        if not consumer.covered:
            cost += 100
        elif consumer.rewrite == GATHER and view.transpose:
            cost += 3  # a transposed gather reads strided rows
        elif consumer.rewrite in (MATMUL, GATHER):
            cost += 1 + (view.has_slice or view.scale != 1.0 or bool(view.dtype))
    return cost


@dataclasses.dataclass
class _Reader:
    value: ir.Value
    base: View  # value == base(root of the group)
    view_node: ir.Node | None
    derived: bool = False  # a slice, scaled or cast copy: never the canonical tensor


def _uses(reader: _Reader, view_nodes: set[ir.Node]) -> list[tuple[ir.Node, int]]:
    return [(u.node, u.idx) for u in reader.value.uses() if u.node not in view_nodes]


def _relative(reader: _Reader, canonical: _Reader) -> View:
    """The reader as a view of the canonical tensor (canonical == transpose?(root))."""
    return reader.base.on_transposed() if canonical.base.transpose else reader.base


def _plan_group(
    readers: list[_Reader],
    view_nodes: set[ir.Node],
    preferred: frozenset[str] = frozenset(),
    scopes: Scopes | None = None,
) -> GroupBinding:
    """Chooses the canonical initializer of a set and plans every member's consumers.

    Among equally cheap candidates, one whose graph already encloses every node that will read
    it is preferred; otherwise the pass moves the canonical tensor outwards (``scopes.py``).
    """
    group_values = {r.value for r in readers}
    twice = {
        n
        for r in readers
        for n, _ in _uses(r, view_nodes)
        if sum(1 for i in n.inputs if i in group_values) > 1
    }

    def plan_for(canonical: _Reader):
        members, canonical_uses, all_consumers, all_views = [], [], [], []
        for reader in readers:
            uses = _uses(reader, view_nodes)
            if reader is canonical:
                for node, idx in uses:
                    consumer = _canonical_use_plan(node, idx)
                    canonical_uses.append((node, idx, consumer))
                    all_consumers.append(consumer)
                    all_views.append(View())
                continue
            view = _relative(reader, canonical)
            rank = (
                len(reader.value.shape or ())
                if reader.view_node
                else len(reader.value.const_value.shape)
            )  # type: ignore[union-attr]
            planned = []
            for node, idx in uses:
                if node in twice:
                    consumer = Consumer(
                        node_label(node),
                        node.op_type,
                        idx,
                        "",
                        "reads the shared tensor at two inputs",
                    )
                else:
                    consumer = plan_consumer(node, idx, view, rank=2 if reader.view_node else rank)
                planned.append((node, idx, consumer))
                all_consumers.append(consumer)
                all_views.append(view)
            members.append((reader, view, planned))
        return members, canonical_uses, _cost(all_consumers, all_views)

    candidates = [r for r in readers if r.view_node is None and not r.derived]
    candidates = [r for r in candidates if r.value.name in preferred] or candidates

    plans = {c.value: plan_for(c) for c in candidates}

    def key(candidate: _Reader) -> tuple[int, bool]:
        members, canonical_uses, cost = plans[candidate.value]
        reading = [n for n, _, _ in canonical_uses]
        reading += [n for _, _, planned in members for n, _, c in planned if c.covered]
        graph = candidate.value.graph
        moves = scopes is not None and not scopes.encloses(graph, reading)  # type: ignore[arg-type]
        return cost, moves

    best = min(candidates, key=key)  # min keeps graph order on ties
    members, canonical_uses, _ = plans[best.value]
    tensor = best.value.const_value
    assert tensor is not None
    bindings = []
    for reader, view, planned in members:
        reasons = sorted({c.reason for _, _, c in planned if not c.covered})
        if reader.view_node is not None:
            read = reader.view_node.inputs[0].const_value  # type: ignore[union-attr]
            assert read is not None
            source, nbytes, shape = (
                reader.view_node.op_type,
                0,
                tuple(reversed(read.shape.numpy())),
            )
            dtype = read.dtype.name
        else:
            t = reader.value.const_value
            assert t is not None
            source, nbytes, shape, dtype = (
                "initializer",
                t.nbytes,
                tuple(t.shape.numpy()),
                t.dtype.name,
            )
        member = Member(
            name=reader.value.name or "?",
            source=source,
            shape=tuple(int(d) for d in shape),
            dtype=dtype,
            nbytes=nbytes,
            view=view,
            consumers=[c for _, _, c in planned],
            kept_reason="; ".join(reasons),
        )
        bindings.append(MemberBinding(reader.value, view, reader.view_node, planned, member))
    plan = ShareGroup(
        canonical=best.value.name or "?",
        shape=tuple(int(d) for d in tensor.shape.numpy()),
        dtype=tensor.dtype.name,
        nbytes=tensor.nbytes,
        members=[b.plan for b in bindings],
        canonical_consumers=[c for _, _, c in canonical_uses],
    )
    return GroupBinding(best.value, bindings, canonical_uses, plan)


def _readers(eligible: list[ir.Value], view_nodes: list[ir.Node]):
    """Groups every eligible initializer and view node under the root of its widest tensor."""
    cache = TensorCache()
    uf = _join_copies(eligible, cache)
    roots = list(dict.fromkeys(uf.find(v)[0] for v in eligible))
    tops = resolve(find_derived(roots, cache))
    sets: dict[ir.Value, list[_Reader]] = collections.defaultdict(list)

    def add(value: ir.Value, source: ir.Value, view_node: ir.Node | None) -> None:
        root, parity = uf.find(source)
        parity ^= view_node is not None
        top, base = tops.get(root, (root, View()))
        base = dataclasses.replace(base, transpose=base.transpose ^ parity)
        sets[top].append(_Reader(value, base, view_node, derived=root in tops))

    for value in eligible:
        add(value, value, None)
    for node in view_nodes:
        add(node.outputs[0], node.inputs[0], node)  # type: ignore[arg-type]
    return sets


def run_analysis(
    model: ir.Model,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    *,
    preferred: frozenset[str] = frozenset(),
    shared: frozenset[str] = frozenset(),
) -> Analysis:
    """Analyses ``model`` without changing it: the main graph and every subgraph.

    Initializers of ``If``, ``Loop`` and ``Scan`` bodies take part like the main graph's
    (``Constant`` nodes do once lifted to initializers); a group may span graph levels, and
    the pass keeps its canonical tensor in a graph that encloses every reader. Functions hold
    no initializers and are left alone; their large ``Constant`` tensors are reported skipped.

    Args:
        model: the model; external data is read through memory maps, one tensor at a time.
        min_elements: initializers with fewer elements are ignored.
        preferred: names to choose as canonical when a group holds one (cross-model sharing).
        shared: names whose bytes other models share: each forms a group even alone, so its
            MatMul/Gemm consumers read it through IclMatMul (no private prepacked copy).
    """
    scopes = Scopes(model)
    eligible, skipped = [], []
    for graph in scopes.graphs():
        mine, why = _eligible(graph, min_elements, main=graph is model.graph)
        eligible += mine
        skipped += why
    skipped += function_constants(model, min_elements)
    view_nodes = _transpose_views(model.graph, set(eligible))
    view_node_set = set(view_nodes)
    groups = []
    for readers in _readers(eligible, view_nodes).values():
        direct = [r for r in readers if r.view_node is None]
        views = [r for r in readers if r.view_node is not None]
        base_uses = sum(len(_uses(r, view_node_set)) for r in direct)
        alone_but_shared = any(r.value.name in shared for r in direct)
        if len(direct) < 2 and not (views and base_uses + len(views) >= 2) and not alone_but_shared:
            continue
        groups.append(_plan_group(readers, view_node_set, preferred, scopes))
    initializers = [v for g in scopes.graphs() for v in g.initializers.values()]
    total = sum(v.const_value.nbytes for v in initializers if v.const_value)
    plan = SharePlan(
        groups=[g.plan for g in groups],
        skipped=skipped,
        initializer_count=len(initializers),
        initializer_bytes=total,
    )
    for group in plan.groups:
        logger.info(
            "group %s: %d members, %d bytes freed",
            group.canonical,
            len(group.members),
            group.freed_bytes,
        )
    return Analysis(plan, groups)


def analyze(model: ir.Model, min_elements: int = DEFAULT_MIN_ELEMENTS) -> SharePlan:
    """Returns the SharePlan of ``model`` (prints nothing, changes nothing)."""
    return run_analysis(model, min_elements).plan
