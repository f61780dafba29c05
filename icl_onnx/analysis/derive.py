"""Views that are not copies: slices, scaled copies and dtype-cast copies of another tensor.

Works on one representative tensor per set of exact/transposed copies. A pair is considered
only when the shapes allow the relation, and is nominated only when sampled elements agree
(``probes.py``): rows or columns of a slice against an index of the whole's row or column
signatures; ``fl(c * a) == b`` or ``a.astype(b.dtype) == b`` at the sampled positions. Each
candidate is then verified on all the values (``verify.py``). A relation
``child == view(parent)`` always points at the tensor that holds more information: the whole
tensor of a slice, the float32 tensor of a cast. Chains (a slice of a cast copy) are composed
into one view where the ICL attributes can express it; otherwise the link is dropped.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import onnx_ir as ir

from icl_onnx.analysis.plan import View
from icl_onnx.analysis.probes import bits, vector_signatures
from icl_onnx.analysis.tensors import TensorCache
from icl_onnx.analysis.verify import _near_float32, is_cast_copy, is_slice, scale_factor

__all__ = ["Derived", "find_derived", "resolve", "compose"]

#: Candidates verified per tensor and relation at most (crowded buckets come from repeated
#: values, e.g. zero rows).
_MAX_BUCKET = 8
#: Vectors of a tensor tried as the look-up key of a slice (the least crowded one is used).
_LOOKUP_VECTORS = 4


@dataclasses.dataclass(frozen=True)
class Derived:
    """``child == view(parent)``, both representatives of their sets."""

    child: ir.Value
    parent: ir.Value
    view: View


class _VectorIndex:
    """Per (tensor, axis): the positions of the rows (0) or columns (1) with a signature.

    Signatures are sorted once per (tensor, axis); a look-up is two binary searches.
    """

    def __init__(self, cache: TensorCache) -> None:
        self._cache = cache
        self._index: dict[tuple[ir.Value, int], tuple[np.ndarray, np.ndarray]] = {}

    def lookup(self, value: ir.Value, axis: int, signature: int) -> list[int]:
        key = (value, axis)
        if key not in self._index:
            signatures = vector_signatures(self._cache.array(value), axis)
            order = np.argsort(signatures, kind="stable")
            self._index[key] = (signatures[order], order)
        ordered, order = self._index[key]
        h = np.uint64(signature)
        lo, hi = np.searchsorted(ordered, h, "left"), np.searchsorted(ordered, h, "right")
        return order[lo:hi].tolist()


# (vectors of the part, vectors of the whole, view transpose): see docs/design.md
_SLICE_RELATIONS = ((0, 0, False), (1, 1, False), (1, 0, True), (0, 1, True))


def _slice_parents(x_shape, shapes, parent_axis: int, transpose: bool):
    """Wholes whose shape admits ``x == transpose?(whole[start:start+n] along parent_axis)``."""
    view_shape = x_shape[::-1] if transpose else x_shape
    for value, shape in shapes:
        if shape[1 - parent_axis] == view_shape[1 - parent_axis]:
            if shape[parent_axis] > view_shape[parent_axis]:
                yield value


def _slices(values: list[ir.Value], cache: TensorCache) -> list[Derived]:
    """Row/column slices, plain or transposed, found through row/column signatures."""
    by_dtype: dict[str, list[tuple[ir.Value, tuple[int, ...]]]] = collections.defaultdict(list)
    for v in values:
        if len(cache.shape(v)) == 2:
            by_dtype[cache.dtype(v)].append((v, cache.shape(v)))
    index = _VectorIndex(cache)
    found = []
    for shapes in by_dtype.values():
        for x, x_shape in shapes:
            found += _find_slices(x, x_shape, shapes, cache, index)
    return found


def _find_slices(x, x_shape, shapes, cache: TensorCache, index: _VectorIndex) -> list[Derived]:
    """Every verified ``x == slice view of parent``, at most one per parent and relation."""
    found = []
    own_signatures: dict[int, list[int]] = {}
    for own, parent_axis, transpose in _SLICE_RELATIONS:
        for parent in _slice_parents(x_shape, shapes, parent_axis, transpose):
            if parent is x:
                continue
            if own not in own_signatures:
                array = cache.array(x)
                head = array[:_LOOKUP_VECTORS] if own == 0 else array[:, :_LOOKUP_VECTORS]
                own_signatures[own] = vector_signatures(head, own).tolist()
            buckets = [index.lookup(parent, parent_axis, h) for h in own_signatures[own]]
            i = min(range(len(buckets)), key=lambda k: len(buckets[k]))
            for j in buckets[i][:_MAX_BUCKET]:
                start = j - i
                if is_slice(cache.array(x), cache.array(parent), parent_axis, start, transpose):
                    size = x_shape[parent_axis ^ transpose]
                    view = View(transpose, parent_axis, start, int(size))
                    found.append(Derived(x, parent, view))
                    break
    return found


def _scale_estimates(parent: np.ndarray, child: np.ndarray) -> float | None:
    """``c`` with ``fl(c * parent) == child`` on the samples (bit for bit), or None."""
    with np.errstate(all="ignore"):
        if not (np.isfinite(parent).all() and np.isfinite(child).all()):
            return None
        k = int(np.argmax(np.abs(parent)))
        if parent[k] == 0.0:
            return None
        for c in _near_float32(float(child[k]) / float(parent[k])):
            if c == 1.0 or c == 0.0 or not np.isfinite(c):
                continue
            if np.array_equal(bits(parent * c), bits(child)):
                return float(c)
    return None


def _same_shape_pairs(values: list[ir.Value], cache: TensorCache, parents: list[ir.Value]):
    """Yields ``(x, parent, transpose)`` where shapes admit ``x == f(transpose?(parent))``."""
    by_shape: dict[tuple[int, ...], list[ir.Value]] = collections.defaultdict(list)
    for p in parents:
        by_shape[cache.shape(p)].append(p)
    for x in values:
        shape = cache.shape(x)
        for parent in by_shape.get(shape, []):
            yield x, parent, False
        if len(shape) == 2:
            for parent in by_shape.get(shape[::-1], []):
                yield x, parent, True


def _scales(values: list[ir.Value], cache: TensorCache) -> list[Derived]:
    """Scaled copies ``child == c * transpose?(parent)`` (float32), every verified pair.

    Both directions of a pair may verify (``c = -1`` or a power of two is exact both ways);
    ``find_derived`` keeps one.
    """
    floats = [v for v in values if cache.dtype(v) == "FLOAT"]
    found = []
    for x, parent, transpose in _same_shape_pairs(floats, cache, floats):
        if parent is x:
            continue
        sampled = cache.probes(parent).flip if transpose else cache.probes(parent).own
        c = _scale_estimates(sampled, cache.probes(x).own)
        if c is None:
            continue
        c = scale_factor(cache.array(parent), cache.array(x), transpose, estimate=c)
        if c is not None:
            found.append(Derived(x, parent, View(transpose=transpose, scale=c)))
    return found


def _one_direction(scales: list[Derived], others: list[Derived], values: list[ir.Value]):
    """Drops the reverse of scale relations that verify both ways.

    The parent kept is the tensor other relations already derive from (so a cast or slice of
    it still composes), else the one first in graph order.
    """
    parents = {r.parent for r in others}
    order = {v: i for i, v in enumerate(values)}
    pairs = {(r.child, r.parent) for r in scales}

    def rank(v: ir.Value) -> tuple[bool, int]:
        return v in parents, -order[v]

    return [
        r
        for r in scales
        if (r.parent, r.child) not in pairs or rank(r.parent) > rank(r.child)
    ]


def _casts(values: list[ir.Value], cache: TensorCache) -> list[Derived]:
    """Float16/bfloat16 copies of float32 tensors, plain or transposed."""
    narrow = [v for v in values if cache.dtype(v) in ("FLOAT16", "BFLOAT16")]
    wide = [v for v in values if cache.dtype(v) == "FLOAT"]
    found = []
    for child, parent, transpose in _same_shape_pairs(narrow, cache, wide):
        dtype = cache.array(child).dtype
        sampled = cache.probes(parent).flip if transpose else cache.probes(parent).own
        if not np.array_equal(bits(sampled.astype(dtype)), bits(cache.probes(child).own)):
            continue
        if is_cast_copy(cache.array(parent), cache.array(child), transpose):
            view = View(transpose=transpose, dtype=cache.dtype(child))
            found.append(Derived(child, parent, view))
    return found


def find_derived(values: list[ir.Value], cache: TensorCache) -> list[Derived]:
    """Returns every verified slice, scale and cast relation among ``values``.

    Args:
        values: one representative per set of copies (they are never copies of each other).
        cache: arrays (memory-mapped for external data) and samples of the values.
    """
    others = [*_casts(values, cache), *_slices(values, cache)]
    return [*others, *_one_direction(_scales(values, cache), others, values)]


def _elementwise(view: View) -> bool:
    return view.scale != 1.0 or bool(view.dtype)


def compose(outer: View, inner: View) -> View | None:
    """Returns ``v`` with ``outer(inner(t)) == v(t)``, or None when no single view is exact.

    Two slices, or two element-wise parts (scale, cast), do not compose exactly.
    """
    if (outer.has_slice and inner.has_slice) or (_elementwise(outer) and _elementwise(inner)):
        return None
    scale = outer.scale * inner.scale
    dtype = outer.dtype or inner.dtype
    if inner.has_slice:
        base = dataclasses.replace(inner, transpose=inner.transpose ^ outer.transpose)
    else:
        base = outer.on_transposed() if inner.transpose else outer
    return dataclasses.replace(base, scale=scale, dtype=dtype)


def resolve(relations: list[Derived]) -> dict[ir.Value, tuple[ir.Value, View]]:
    """Maps each child to its top-most parent and its composed view (one parent per child).

    A child takes the first of its relations (in the order given) whose parent resolves
    without a cycle and whose chain composes into one view; a child with none stays a tensor
    of its own. Every parent a child maps to is itself a tensor of its own.
    """
    options: dict[ir.Value, list[Derived]] = collections.defaultdict(list)
    for rel in relations:
        options[rel.child].append(rel)
    resolved: dict[ir.Value, tuple[ir.Value, View]] = {}
    visiting: set[ir.Value] = set()

    def walk(v: ir.Value) -> tuple[ir.Value, View] | None:
        if v in resolved:
            return resolved[v]
        if v in visiting:
            return None  # a cycle: the caller tries its next relation
        visiting.add(v)
        resolved_v = (v, View())
        for rel in options.get(v, []):
            up = walk(rel.parent)
            if up is None or up[0] is v:
                continue
            view = compose(rel.view, up[1])
            if view is not None:
                resolved_v = (up[0], view)
                break
        visiting.discard(v)
        resolved[v] = resolved_v
        return resolved_v

    for child in list(options):
        walk(child)
    return {c: resolved[c] for c in options if resolved[c][0] is not c}
