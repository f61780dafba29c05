"""Which ICL operator, if any, lets a consumer read a view of the canonical tensor.

The rules are plain decisions on one (node, input index, view) triple; ``ShareWeightsPass``
carries them out. A consumer no rule covers keeps its copy, and ``Consumer.reason`` says why.
"""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from icl_onnx.analysis.plan import Consumer, View
from icl_onnx.ops import DOMAIN, GATHER, MATMUL

__all__ = ["plan_consumer", "node_label", "gemm_view"]


def node_label(node: ir.Node) -> str:
    """Returns the node's name, or ``op_type(first output)`` for unnamed nodes."""
    if node.name:
        return node.name
    first = node.outputs[0].name if node.outputs else "?"
    return f"{node.op_type}({first})"


def _attr(node: ir.Node, name: str, default):
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def _is_onnx(node: ir.Node) -> bool:
    return node.domain in ("", "ai.onnx")


def gemm_view(node: ir.Node, view: View) -> tuple[View | None, str]:
    """Returns the view an IclMatMul must apply for ``Gemm(A, view(W), C)``, or a reason."""
    if _attr(node, "transA", 0):
        return None, "Gemm with transA=1"
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None:
        if _attr(node, "beta", 1.0) != 1.0:
            return None, "Gemm with beta != 1 and a bias"
        if bias.shape is None or len(bias.shape) != 1:
            return None, "Gemm bias is not 1-D"
    out = view.then_transpose() if _attr(node, "transB", 0) else view
    alpha = float(_attr(node, "alpha", 1.0))
    if alpha != 1.0:
        out = dataclasses.replace(out, scale=out.scale * alpha)
    return out, ""


def _icl_node_view(node: ir.Node) -> View:
    return View(
        transpose=bool(_attr(node, "transpose", 0)),
        slice_axis=int(_attr(node, "slice_axis", 0)),
        slice_start=int(_attr(node, "slice_start", 0)),
        slice_size=int(_attr(node, "slice_size", -1)),
        scale=float(_attr(node, "scale", 1.0)),
    )


def plan_consumer(node: ir.Node, index: int, view: View, *, rank: int) -> Consumer:
    """Decides how ``node``'s input ``index``, which holds ``view(canonical)``, is rewritten.

    Args:
        node: the consumer.
        index: which of its inputs holds the member.
        view: the member as a view of the canonical tensor.
        rank: the member's rank (ICL operators read 2-D tensors).
    """
    label, op = node_label(node), node.op_type

    def covered(rewrite: str) -> Consumer:
        return Consumer(label, op, index, rewrite)

    def not_covered(reason: str) -> Consumer:
        return Consumer(label, op, index, "", reason)

    # A MatMul/Gemm weight that is shared moves to IclMatMul even when it is an exact copy:
    # ORT would otherwise prepack a private copy of it for each such node.
    if rank == 2 and _is_onnx(node) and op == "MatMul" and index == 1:
        return covered(MATMUL)
    if rank == 2 and _is_onnx(node) and op == "Gemm" and index == 1:
        gview, reason = gemm_view(node, view)
        if gview is not None:
            return covered(MATMUL)
        if not view.is_identity:
            return not_covered(reason)
    if view.is_identity:
        return covered("rewire")
    if rank != 2:
        return not_covered(f"a {view.kind} view of a rank-{rank} tensor has no ICL operator")
    if _is_onnx(node) and op == "Gather" and index == 0:
        axis = int(_attr(node, "axis", 0))
        if axis not in (0, -2):
            return not_covered(f"Gather on axis {axis}")
        return covered(GATHER)
    if node.domain == DOMAIN and op in (MATMUL, GATHER) and index == (1 if op == MATMUL else 0):
        inner = _icl_node_view(node)
        if inner.is_identity or inner == View(transpose=True):
            if not view.has_slice:
                return covered(op)
        return not_covered(f"{op} already reads a {inner.kind} view; views do not compose here")
    return not_covered(f"{op} input {index} reads it; no ICL operator covers {op}")
