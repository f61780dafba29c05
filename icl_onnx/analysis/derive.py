"""Views that are not copies: slices, scaled copies and dtype-cast copies of another tensor.

Works on one representative tensor per set of exact/transposed copies. Candidates come from
keys (``view_keys.py`` for slices and scales, ``fingerprint.py`` on the cast values for casts),
one look-up per tensor; each candidate is verified on the values (``verify.py``). A relation
``child == view(parent)`` always points at the tensor that holds more information: the whole
tensor of a slice, the float32 tensor of a cast. Chains (a slice of a cast copy) are composed
into one view where the ICL attributes can express it; otherwise the link is dropped.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from icl_onnx.analysis.fingerprint import fingerprint
from icl_onnx.analysis.plan import View
from icl_onnx.analysis.verify import is_cast_copy, is_slice, scale_factor
from icl_onnx.analysis.view_keys import sign_keys, vector_hashes

__all__ = ["Derived", "find_derived", "resolve", "compose"]

#: Look-ups whose bucket holds more entries than this try another vector of the tensor.
_MAX_BUCKET = 8


@dataclasses.dataclass(frozen=True)
class Derived:
    """``child == view(parent)``, both representatives of their sets."""

    child: ir.Value
    parent: ir.Value
    view: View


ArrayOf = Callable[[ir.Value], np.ndarray]


def _dtype(value: ir.Value) -> str:
    return value.const_value.dtype.name  # type: ignore[union-attr]


def _slices(values: list[ir.Value], array_of: ArrayOf) -> list[Derived]:
    """Row/column slices, plain or transposed, found through per-vector hashes."""
    two_d = [v for v in values if len(v.const_value.shape) == 2]  # type: ignore[union-attr]
    hashes = {v: (vector_hashes(array_of(v), 0), vector_hashes(array_of(v), 1)) for v in two_d}
    index: dict[tuple, list[tuple[ir.Value, int, int]]] = collections.defaultdict(list)
    for v, (rows, cols) in hashes.items():
        for kind, hs in ((0, rows), (1, cols)):
            for i, hv in enumerate(hs.tolist()):
                index[(_dtype(v), kind, hv)].append((v, kind, i))
    found = []
    for x, (rows, cols) in hashes.items():
        # (vectors of x, which vectors of the parent, view transpose): see docs/design.md
        for own, parent_kind, transpose in (
            (rows, 0, False),
            (cols, 1, False),
            (cols, 0, True),
            (rows, 1, True),
        ):
            buckets = [index.get((_dtype(x), parent_kind, int(h)), []) for h in own[:4]]
            i = min(range(len(buckets)), key=lambda k: len(buckets[k]))
            for parent, _, j in buckets[i][:_MAX_BUCKET]:
                if parent is x:
                    continue
                start = j - i
                if is_slice(array_of(x), array_of(parent), parent_kind, start, transpose):
                    size = x.const_value.shape[parent_kind ^ transpose]  # type: ignore[union-attr]
                    view = View(transpose, parent_kind, start, int(size))
                    found.append(Derived(x, parent, view))
                    break
    return found


def _scales(values: list[ir.Value], array_of: ArrayOf) -> list[Derived]:
    """Scaled copies ``child == c * transpose?(parent)``, found through sign keys."""
    floats = [v for v in values if _dtype(v) == "FLOAT"]
    keys = {v: sign_keys(array_of(v), "FLOAT") for v in floats}
    index: dict[tuple, list[ir.Value]] = collections.defaultdict(list)
    for v, (plain, _) in keys.items():
        index[plain].append(v)
    found = []
    for x, (plain, transposed) in keys.items():
        for key, transpose in ((plain, False), (transposed, True)):
            for parent in index.get(key, [])[:_MAX_BUCKET] if key else []:
                if parent is x:
                    continue
                c = scale_factor(array_of(parent), array_of(x), transpose)
                if c is not None:
                    found.append(Derived(x, parent, View(transpose=transpose, scale=c)))
                    break
    return found


def _casts(values: list[ir.Value], array_of: ArrayOf) -> list[Derived]:
    """Float16/bfloat16 copies of float32 tensors, plain or transposed."""
    narrow = [v for v in values if _dtype(v) in ("FLOAT16", "BFLOAT16")]
    if not narrow:
        return []
    by_key: dict[tuple, list[ir.Value]] = collections.defaultdict(list)
    for v in narrow:
        fp = fingerprint(array_of(v), _dtype(v))
        by_key[("exact", fp.exact)].append(v)
        by_key[("multiset", fp.multiset)].append(v)
    sizes = {v.const_value.size for v in narrow}  # type: ignore[union-attr]
    found = []
    for wide in values:
        if _dtype(wide) != "FLOAT" or wide.const_value.size not in sizes:  # type: ignore[union-attr]
            continue
        a = array_of(wide)
        for name in {_dtype(v) for v in narrow}:
            dtype = narrow_dtype(narrow, name)
            fp = fingerprint(a.astype(dtype), name)
            for key, transpose in ((("exact", fp.exact), False), (("multiset", fp.multiset), True)):
                for child in by_key.get(key, [])[:_MAX_BUCKET]:
                    if is_cast_copy(a, array_of(child), transpose):
                        found.append(Derived(child, wide, View(transpose=transpose, dtype=name)))
    return found


def narrow_dtype(values: list[ir.Value], name: str) -> np.dtype:
    """The numpy dtype (ml_dtypes for bfloat16) of the first value whose ONNX dtype is ``name``."""
    return next(v.const_value.numpy().dtype for v in values if _dtype(v) == name)  # type: ignore[union-attr]


def find_derived(values: list[ir.Value], array_of: ArrayOf) -> list[Derived]:
    """Returns every verified slice, scale and cast relation among ``values``.

    Args:
        values: one representative per set of copies (they are never copies of each other).
        array_of: returns a value's array (memory-mapped for external data).
    """
    return [*_casts(values, array_of), *_slices(values, array_of), *_scales(values, array_of)]


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

    A child keeps its first relation; a relation that would close a cycle, or whose chain does
    not compose, is dropped, and the child stays a tensor of its own.
    """
    parent: dict[ir.Value, Derived] = {}

    def top(v: ir.Value) -> ir.Value:
        while v in parent:
            v = parent[v].parent
        return v

    for rel in relations:
        if rel.child not in parent and top(rel.parent) is not rel.child:
            parent[rel.child] = rel

    resolved: dict[ir.Value, tuple[ir.Value, View]] = {}

    def walk(v: ir.Value) -> tuple[ir.Value, View]:
        if v in resolved:
            return resolved[v]
        rel = parent.get(v)
        if rel is None:
            return v, View()
        root, inner = walk(rel.parent)
        view = compose(rel.view, inner)
        if view is None:
            del parent[v]
            return v, View()
        resolved[v] = (root, view)
        return root, view

    for child in list(parent):
        walk(child)
    return {c: resolved[c] for c in parent if c in resolved}
