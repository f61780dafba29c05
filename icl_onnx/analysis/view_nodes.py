"""Nodes that read an initializer as a view of its bytes: ``Transpose`` and the reshapes.

A ``Reshape``, ``Flatten``, ``Squeeze`` or ``Unsqueeze`` whose shape or axes are constant
gives the same bytes with other dims; a 2-D ``Transpose`` gives the transposed matrix. ONNX
Runtime folds every such node reading an initializer into a new initializer when it loads the
model, so each is a copy in the session even though the file holds one tensor. The analysis
makes the node's output a member of its initializer's set (``View`` says how it reads it), and
the consumers of that output read the canonical tensor through their rules instead.
Changes nothing.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from icl_onnx.views import View

__all__ = ["find_view_nodes", "node_view"]


def _ints(value: ir.Value | None) -> list[int] | None:
    """The constant integer values of ``value`` (an initializer or a Constant's output)."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    if tensor is None:
        return None
    return [int(v) for v in np.asarray(tensor.numpy()).reshape(-1)]


def _attr_ints(node: ir.Node, name: str) -> list[int] | None:
    found = node.attributes.get(name)
    return None if found is None else [int(v) for v in found.value]


def _reshape(node: ir.Node, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    target = _ints(node.inputs[1] if len(node.inputs) > 1 else None)
    if target is None:
        return None
    allowzero = node.attributes.get("allowzero")
    if not (allowzero is not None and allowzero.value):
        target = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(target)]
    if target.count(-1) > 1:
        return None
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        if known == 0 or math.prod(shape) % known:
            return None
        target[target.index(-1)] = math.prod(shape) // known
    return tuple(target)


def _flatten(node: ir.Node, shape: tuple[int, ...]) -> tuple[int, ...]:
    axis = int(node.attributes["axis"].value) if "axis" in node.attributes else 1
    axis = axis + len(shape) if axis < 0 else axis
    return (math.prod(shape[:axis]), math.prod(shape[axis:]))


def _axes(node: ir.Node) -> list[int] | None:
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        return _ints(node.inputs[1])
    return _attr_ints(node, "axes")


def _squeeze(node: ir.Node, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    axes = _axes(node)
    if axes is None:
        if len(node.inputs) > 1 and node.inputs[1] is not None:
            return None  # axes given but not constant
        return tuple(d for d in shape if d != 1)
    drop = {a + len(shape) if a < 0 else a for a in axes}
    if any(not 0 <= a < len(shape) or shape[a] != 1 for a in drop):
        return None
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def _unsqueeze(node: ir.Node, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    axes = _axes(node)
    if axes is None:
        return None
    rank = len(shape) + len(axes)
    insert = {a + rank if a < 0 else a for a in axes}
    if len(insert) != len(axes) or any(not 0 <= a < rank for a in insert):
        return None
    dims = iter(shape)
    return tuple(1 if i in insert else next(dims) for i in range(rank))


def node_view(node: ir.Node) -> View | None:
    """How ``node``'s output reads its first input, when it is a view of the same bytes.

    Returns ``View(transpose=True)`` for a 2-D ``Transpose``, ``View(shape=...)`` for a reshape
    with constant arguments (the output's dims), or None for anything else.
    """
    if node.domain not in ("", "ai.onnx") or not node.inputs or node.inputs[0] is None:
        return None
    source = node.inputs[0].const_value
    if source is None:
        return None
    shape = tuple(int(d) for d in source.shape)
    if node.op_type == "Transpose":
        perm = _attr_ints(node, "perm")
        if len(shape) == 2 and perm in (None, [1, 0]):
            return View(transpose=True)
        return None
    readers = {"Reshape": _reshape, "Flatten": _flatten, "Squeeze": _squeeze}
    readers["Unsqueeze"] = _unsqueeze
    read = readers.get(node.op_type)
    out = read(node, shape) if read else None
    if out is None or any(d < 0 for d in out) or math.prod(out) != math.prod(shape):
        return None
    return View(shape=out)


def find_view_nodes(graph: ir.Graph, eligible: set[ir.Value]) -> dict[ir.Node, View]:
    """The view nodes (in ``graph`` or a subgraph) reading an eligible initializer, and views."""
    found: dict[ir.Node, View] = {}
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if node.inputs and node.inputs[0] in eligible:
            view = node_view(node)
            if view is not None:
                found[node] = view
    return found
