"""``Gather(view(W), ids)`` on axis 0 becomes ``IclGather(W, ids)`` with the view's attributes."""

from __future__ import annotations

import onnx_ir as ir

from icl_onnx.ops import GATHER
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

__all__ = ["GatherRule"]


class GatherRule(ConsumerRule):
    """The table (input 0, 2-D) of a Gather on axis 0 reading a view (exact copies are rewired).

    A cast view sets IclGather's ``output_dtype`` to the member's type.
    """

    name = "gather"
    view_parts = LOW_RANK_PARTS

    def match(self, use: Use) -> Outcome | None:
        """Claims input 0 of an ONNX Gather when it is 2-D and not an exact copy."""
        node = use.node
        if not (is_onnx(node) and node.op_type == "Gather" and use.index == 0):
            return None
        if use.rank != 2 or use.view.is_identity:
            return None
        axis = int(attr(node, "axis", 0))
        return self.ok() if axis in (0, -2) else self.fail(f"Gather on axis {axis}")

    def becomes(self, node: ir.Node) -> str:
        """IclGather."""
        return GATHER

    def cost(self, node: ir.Node, view: View) -> int:
        """An ICL read; a transposed gather reads strided rows."""
        return 3 if view.transpose else icl_cost(view)

    def rewrite(self, node: ir.Node, index: int, canonical: ir.Value, view: View) -> bool:
        """Replaces the Gather by ``IclGather(canonical, ids[, U, V])`` (U, V: a low-rank view)."""
        extra = {"output_dtype": ir.DataType[view.dtype].value} if view.dtype else {}
        factors = factor_inputs(view, node.graph)  # type: ignore[arg-type]
        replace_with_icl_node(node, GATHER, [canonical, node.inputs[1], *factors], view, extra)
        return True
