"""The sets of tensors that are copies or views of one another (one model or several).

Every eligible initializer is sampled at positions fixed by its shape (``probes.py``); tensors
whose dtype, shape and samples match are fingerprinted in one streaming pass
(``fingerprint.py``), tensors whose samples match another's transpose are candidates, and every
candidate is verified on its values (``verify.py``) and joined in a union-find that tracks
whether each tensor is transposed relative to its set's root. View nodes reading an initializer
(``Transpose``, and the reshapes: ``view_nodes.py``) join the set of that initializer as view
members. Sets whose representative is a
slice, scaled copy or dtype-cast copy of another set's (``derive.py``) join that set with the
composed view. Changes nothing.
"""

from __future__ import annotations

import collections
import dataclasses

import onnx_ir as ir

from icl_onnx import progress
from icl_onnx.analysis.derive import find_derived, resolve
from icl_onnx.analysis.findings import Skipped
from icl_onnx.analysis.fingerprint import exact_digest, multiset_key
from icl_onnx.analysis.tensors import TensorCache
from icl_onnx.analysis.verify import is_exact_copy, is_transposed_copy
from icl_onnx.analysis.view_nodes import node_view
from icl_onnx.views import View

__all__ = [
    "DEFAULT_MIN_ELEMENTS",
    "Reader",
    "eligible_initializers",
    "group_readers",
    "relative_view",
    "uses",
]

#: Transposed-copy candidates verified per tensor at most.
_MAX_BUCKET = 8

#: Initializers with fewer elements are not worth sharing.
DEFAULT_MIN_ELEMENTS = 1024


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


def eligible_initializers(
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


@dataclasses.dataclass
class Reader:
    """A tensor of a set: an initializer, or the output of a view node reading one.

    Attributes:
        value: the tensor.
        base: ``value == base(root of the set)``.
        view_node: the view node (Transpose, Reshape, ...) whose output ``value`` is, if any.
        derived: a slice, scaled or cast copy, never the canonical tensor.
        model: the index of the model that holds it.
        foreign: another model's tensor standing in for this model's canonical (it has no
            uses in this model).
    """

    value: ir.Value
    base: View
    view_node: ir.Node | None
    derived: bool = False
    model: int = 0
    foreign: bool = False

    @property
    def rank(self) -> int:
        """The rank the tensor's consumers see (a Transpose view is 2-D)."""
        if self.view_node is not None:
            own = node_view(self.view_node)
            return len(own.shape) if own is not None and own.shape else 2
        return len(self.value.const_value.shape)  # type: ignore[union-attr]


def uses(reader: Reader, view_nodes: set[ir.Node]) -> list[tuple[ir.Node, int]]:
    """The (node, input index) pairs reading ``reader``, view nodes of its set left out."""
    if reader.foreign:
        return []
    return [(u.node, u.idx) for u in reader.value.uses() if u.node not in view_nodes]


def relative_view(reader: Reader, canonical: Reader) -> View:
    """The reader as a view of the canonical tensor (canonical == transpose?(root))."""
    return reader.base.on_transposed() if canonical.base.transpose else reader.base


def group_readers(
    eligible: list[ir.Value], view_nodes: list[ir.Node], model_of: dict[ir.Value, int] | None = None
) -> dict[ir.Value, list[Reader]]:
    """Groups every eligible initializer and view node under the root of its widest tensor.

    Args:
        eligible: the initializers that may be shared (of one model or several).
        view_nodes: view nodes reading one of them (``view_nodes.find_view_nodes``).
        model_of: the model index of each eligible value (all in model 0 when omitted).
    """
    model_of = model_of or {}
    cache = TensorCache()
    uf = _join_copies(eligible, cache)
    roots = list(dict.fromkeys(uf.find(v)[0] for v in eligible))
    tops = resolve(find_derived(roots, cache))
    sets: dict[ir.Value, list[Reader]] = collections.defaultdict(list)

    def add(value: ir.Value, source: ir.Value, view_node: ir.Node | None) -> None:
        root, parity = uf.find(source)
        own = View() if view_node is None else node_view(view_node) or View()
        parity ^= own.transpose
        top, base = tops.get(root, (root, View()))
        base = dataclasses.replace(base, transpose=base.transpose ^ parity, shape=own.shape)
        model = model_of.get(source, 0)
        sets[top].append(Reader(value, base, view_node, derived=root in tops, model=model))

    for value in eligible:
        add(value, value, None)
    for node in view_nodes:
        add(node.outputs[0], node.inputs[0], node)  # type: ignore[arg-type]
    return sets
