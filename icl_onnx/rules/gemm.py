"""``Gemm(A, view(W), C)`` becomes ``IclMatMul(A, W, C)``, transB and alpha folded in the view."""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from icl_onnx.ops import MATMUL
from icl_onnx.rules.base import (
    LOW_RANK_PARTS,
    ConsumerRule,
    Outcome,
    Use,
    attr,
    factor_inputs,
    icl_cost,
    is_onnx,
    replace_with_icl_node,
)
from icl_onnx.views import View

__all__ = ["GemmRule", "gemm_view"]


def gemm_view(node: ir.Node, view: View) -> tuple[View | None, str]:
    """Returns the view an IclMatMul must apply for ``Gemm(A, view(W), C)``, or a reason."""
    if attr(node, "transA", 0):
        return None, "Gemm with transA=1"
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None:
        if attr(node, "beta", 1.0) != 1.0:
            return None, "Gemm with beta != 1 and a bias"
        if bias.shape is None or len(bias.shape) != 1:
            return None, "Gemm bias is not 1-D"
    out = view.then_transpose() if attr(node, "transB", 0) else view
    alpha = float(attr(node, "alpha", 1.0))
    if alpha != 1.0 and view.rank:
        return None, "Gemm with alpha != 1 reading a low-rank delta"
    if alpha != 1.0:
        out = dataclasses.replace(out, scale=out.scale * alpha)
    return out, ""


class GemmRule(ConsumerRule):
    """The weight (input 1, 2-D) of a Gemm without transA whose bias is 1-D (or beta is 1).

    Like MatMul, an exact copy moves to IclMatMul when the Gemm can; when it cannot, an exact
    copy is left to the rewire rule and any other view stays with the reason.
    """

    name = "gemm"
    view_parts = LOW_RANK_PARTS

    def match(self, use: Use) -> Outcome | None:
        """Claims input 1 of an ONNX Gemm when it is 2-D."""
        node = use.node
        if not (is_onnx(node) and node.op_type == "Gemm" and use.index == 1 and use.rank == 2):
            return None
        view, reason = gemm_view(node, use.view)
        if view is not None:
            return self.ok()
        return None if use.view.is_identity else self.fail(reason)

    def becomes(self, node: ir.Node) -> str:
        """IclMatMul."""
        return MATMUL

    def cost(self, node: ir.Node, view: View) -> int:
        """An ICL read."""
        return icl_cost(view)

    def rewrite(self, node: ir.Node, index: int, canonical: ir.Value, view: View) -> bool:
        """Replaces the Gemm by ``IclMatMul(A, canonical[, C][, U, V])``, the composed view."""
        gview, _ = gemm_view(node, view)
        assert gview is not None
        factors = factor_inputs(gview, node.graph)  # type: ignore[arg-type]
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        inputs = [node.inputs[0], canonical, *([bias, *factors] if factors or bias else [])]
        replace_with_icl_node(node, MATMUL, inputs, gview)
        return True
