"""An exact copy read by any op: the consumer reads the canonical tensor instead."""

from __future__ import annotations

import onnx_ir as ir

from icl_onnx.rules.base import ConsumerRule, Outcome, Use
from icl_onnx.views import View

__all__ = ["RewireExactCopy"]


class RewireExactCopy(ConsumerRule):
    """Any consumer of an exact copy reads the canonical tensor (no ICL operator, no cost).

    The planner applies it after the registered rules, which may claim exact copies first
    (MatMul and Gemm do, so ORT prepacks no private copy of a shared weight).
    """

    name = "rewire"
    view_parts = frozenset()
    replaces_node = False

    def match(self, use: Use) -> Outcome | None:
        """Covers every use of an exact copy."""
        return self.ok() if use.view.is_identity else None

    def becomes(self, node: ir.Node) -> str:
        """The node keeps its op."""
        return node.op_type

    def cost(self, node: ir.Node, view: View) -> int:
        """A plain read."""
        return 0

    def rewrite(self, node: ir.Node, index: int, canonical: ir.Value, view: View) -> bool:
        """Points the input at the canonical tensor."""
        if node.inputs[index] is canonical:
            return False
        node.replace_input_with(index, canonical)
        return True
