"""``MatMul(A, view(W))`` becomes ``IclMatMul(A, W)`` with the view's attributes."""

from __future__ import annotations

import onnx_ir as ir

from icl_onnx.ops import MATMUL
from icl_onnx.rules.base import (
    LOW_RANK_PARTS,
    ConsumerRule,
    Outcome,
    Use,
    factor_inputs,
    icl_cost,
    is_onnx,
    replace_with_icl_node,
)
from icl_onnx.views import View

__all__ = ["MatMulRule"]


class MatMulRule(ConsumerRule):
    """The weight (input 1, 2-D) of a MatMul, exact copies included.

    A shared weight read by a plain MatMul would be prepacked by ORT into a private copy per
    node, so even an exact copy (and the canonical tensor itself) moves to IclMatMul. A
    low-rank view adds its factors as the inputs U, V.
    """

    name = "matmul"
    view_parts = LOW_RANK_PARTS

    def match(self, use: Use) -> Outcome | None:
        """Claims input 1 of an ONNX MatMul when it is 2-D."""
        node = use.node
        if is_onnx(node) and node.op_type == "MatMul" and use.index == 1 and use.rank == 2:
            return self.ok()
        return None

    def becomes(self, node: ir.Node) -> str:
        """IclMatMul."""
        return MATMUL

    def cost(self, node: ir.Node, view: View) -> int:
        """An ICL read."""
        return icl_cost(view)

    def rewrite(self, node: ir.Node, index: int, canonical: ir.Value, view: View) -> bool:
        """Replaces the MatMul by ``IclMatMul(A, canonical[, , U, V])`` (U, V: a low-rank view)."""
        factors = factor_inputs(view, node.graph)  # type: ignore[arg-type]
        inputs = [node.inputs[0], canonical, *([None, *factors] if factors else [])]
        replace_with_icl_node(node, MATMUL, inputs, view)
        return True
