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

from icl_onnx.analysis.probes import bits
from icl_onnx.analysis.tensors import TensorCache
from icl_onnx.analysis.verify import is_cast_copy, is_slice, scale_factor
from icl_onnx.views import View

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
    """Sorted signatures of the rows or columns of 2-D tensors, per (dtype, axis, length).

    An entry holds every row (axis 0) or column (axis 1) of length ``length`` of every tensor
    of that dtype; it is built the first time a tensor looks it up, and a look-up is two
    binary searches.
    """

    def __init__(self, cache: TensorCache, tensors: list[ir.Value]) -> None:
        self._cache = cache
        self._built: dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        #: (dtype, axis, length) -> the tensors with vectors of that length along that axis
        self._owners: dict[tuple[str, int, int], list[ir.Value]] = collections.defaultdict(list)
        self._longest: dict[tuple[str, int, int], int] = collections.defaultdict(int)
        for v in tensors:
            shape = cache.shape(v)
            for axis in (0, 1):
                key = (cache.dtype(v), axis, shape[1 - axis])
                self._owners[key].append(v)
                self._longest[key] = max(self._longest[key], shape[axis])

    def has_longer(self, dtype: str, axis: int, length: int, count: int) -> bool:
        """Whether some tensor has more than ``count`` vectors of ``length`` along ``axis``."""
        return self._longest.get((dtype, axis, length), 0) > count

    def _build(self, key: tuple[str, int, int]):
        parts = [self._cache.signatures(v, key[1]) for v in self._owners[key]]
        signatures = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
        owner = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
        position = np.concatenate([np.arange(len(p)) for p in parts]) if parts else owner
        order = np.argsort(signatures, kind="stable")
        self._built[key] = (signatures[order], owner[order], position[order])

    def lookup(self, dtype: str, axis: int, length: int, signature: int):
        """Returns ``(tensor, position)`` of every vector with ``signature``."""
        key = (dtype, axis, length)
        if key not in self._built:
            self._build(key)
        ordered, owner, position = self._built[key]
        h = np.uint64(signature)
        lo, hi = np.searchsorted(ordered, h, "left"), np.searchsorted(ordered, h, "right")
        owners = self._owners[key]
        return [(owners[o], int(j)) for o, j in zip(owner[lo:hi], position[lo:hi], strict=True)]


# (vectors of the part, vectors of the whole, view transpose): see docs/design.md
_SLICE_RELATIONS = ((0, 0, False), (1, 1, False), (1, 0, True), (0, 1, True))


def _slices(values: list[ir.Value], cache: TensorCache) -> list[Derived]:
    """Row/column slices, plain or transposed, found through row/column signatures."""
    two_d = [v for v in values if len(cache.shape(v)) == 2]
    index = _VectorIndex(cache, two_d)
    found = []
    for x in two_d:
        found += _find_slices(x, cache, index)
    return found


def _starts(hits: list[list[tuple[ir.Value, int]]]) -> dict[ir.Value, set[int]]:
    """Per whole tensor, the starts at which every looked-up vector ``i`` sits at ``start + i``."""
    starts: dict[ir.Value, set[int]] | None = None
    for i, hit in enumerate(hits):
        mine: dict[ir.Value, set[int]] = collections.defaultdict(set)
        for whole, j in hit:
            mine[whole].add(j - i)
        starts = mine if starts is None else {w: starts[w] & mine[w] for w in starts if w in mine}
    return starts or {}


def _find_slices(x: ir.Value, cache: TensorCache, index: _VectorIndex) -> list[Derived]:
    """Every verified ``x == slice view of a whole``, at most one per whole and relation."""
    shape, dtype = cache.shape(x), cache.dtype(x)
    found = []
    for own, parent_axis, transpose in _SLICE_RELATIONS:
        view_shape = shape[::-1] if transpose else shape
        length, size = view_shape[1 - parent_axis], view_shape[parent_axis]
        if not index.has_longer(dtype, parent_axis, length, size):
            continue  # no tensor this could be a slice of
        signatures = cache.head_signatures(x, own, _LOOKUP_VECTORS)
        hits = [index.lookup(dtype, parent_axis, length, h) for h in signatures]
        for whole, starts in _starts(hits).items():
            if whole is x or cache.shape(whole)[parent_axis] <= size:
                continue
            for start in sorted(starts)[:_MAX_BUCKET]:
                if is_slice(cache.array(x), cache.array(whole), parent_axis, start, transpose):
                    view = View(transpose, parent_axis, start, int(size))
                    found.append(Derived(x, whole, view))
                    break
    return found


def _scale_matches(parents: np.ndarray, child: np.ndarray) -> list[tuple[int, float]]:
    """Returns ``(r, c)`` for each row with ``fl(c * parents[r]) == child`` bit for bit.

    Rows and ``child`` are samples; ``c`` is a float32 value other than 1, estimated from
    each row's largest ``|value|``, then it and two float32 neighbours each side are tried, in
    that order.
    """
    with np.errstate(all="ignore"):
        rows = np.arange(len(parents))
        pivot_at = np.argmax(np.abs(parents), axis=1)
        pivot = parents[rows, pivot_at]
        usable = np.isfinite(parents).all(axis=1) & (pivot != 0) & np.isfinite(child).all()
        estimate = (child[pivot_at].astype(np.float64) / pivot.astype(np.float64)).astype(
            np.float32
        )
        candidates, up, down = [estimate], estimate, estimate
        for _ in range(2):
            up = np.nextafter(up, np.float32(np.inf))
            down = np.nextafter(down, np.float32(-np.inf))
            candidates += [up, down]
        c = np.stack(candidates, axis=1)  # (rows, 5)
        scaled = parents[:, None, :] * c[:, :, None]
        match = (bits(scaled) == bits(child)).all(axis=2)
        match &= (c != 1) & (c != 0) & np.isfinite(c) & usable[:, None]
    return [(int(r), float(c[r, np.argmax(match[r])])) for r in np.flatnonzero(match.any(axis=1))]


def _by_shape(values: list[ir.Value], cache: TensorCache) -> dict[tuple, list[ir.Value]]:
    groups: dict[tuple, list[ir.Value]] = collections.defaultdict(list)
    for v in values:
        groups[cache.shape(v)].append(v)
    return groups


def _scales(values: list[ir.Value], cache: TensorCache) -> list[Derived]:
    """Scaled copies ``child == c * transpose?(parent)`` (float32), every verified pair.

    Each tensor's samples are checked against those of every tensor of its shape (or the
    transposed shape) at once. Both directions of a pair may verify (``c = -1`` or a power of
    two is exact both ways); ``find_derived`` keeps one.
    """
    groups = _by_shape([v for v in values if cache.dtype(v) == "FLOAT"], cache)
    found = []
    for shape, group in groups.items():
        targets = [(group, np.stack([cache.probes(p).own for p in group]), False)]
        flipped = groups.get(shape[::-1], []) if len(shape) == 2 else []
        if flipped:
            samples = np.stack([cache.probes(p).flip for p in flipped])  # type: ignore[misc]
            targets.append((flipped, samples, True))
        for x in group:
            for parents, samples, transpose in targets:
                for row, c in _scale_matches(samples, cache.probes(x).own):
                    parent = parents[row]
                    if parent is x:
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

    return [r for r in scales if (r.parent, r.child) not in pairs or rank(r.parent) > rank(r.child)]


def _casts(values: list[ir.Value], cache: TensorCache) -> list[Derived]:
    """Float16/bfloat16 copies of float32 tensors, plain or transposed.

    Narrow tensors are indexed by their samples; each float32 tensor looks up its own samples
    (and its transpose's) cast to each narrow dtype present.
    """
    narrow = [v for v in values if cache.dtype(v) in ("FLOAT16", "BFLOAT16")]
    if not narrow:
        return []
    index: dict[tuple, list[ir.Value]] = collections.defaultdict(list)
    dtypes = {}
    for v in narrow:
        dtypes[cache.dtype(v)] = cache.array(v).dtype
        index[(cache.dtype(v), cache.shape(v), cache.probes(v).key())].append(v)
    found = []
    for wide in (v for v in values if cache.dtype(v) == "FLOAT"):
        probes, shape = cache.probes(wide), cache.shape(wide)
        for name, dtype in dtypes.items():
            layouts = [(probes.own, shape, False)]
            if probes.flip is not None:
                layouts.append((probes.flip, shape[::-1], True))
            for samples, child_shape, transpose in layouts:
                key = (name, child_shape, bits(samples.astype(dtype)).tobytes())
                for child in index.get(key, [])[:_MAX_BUCKET]:
                    if is_cast_copy(cache.array(wide), cache.array(child), transpose):
                        found.append(Derived(child, wide, View(transpose=transpose, dtype=name)))
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
