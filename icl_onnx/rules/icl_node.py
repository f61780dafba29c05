"""An ICL node that already reads a member: its view and the member's fold into one."""

from __future__ import annotations

import onnx_ir as ir

from icl_onnx.ops import DOMAIN, GATHER, MATMUL
from icl_onnx.rules.base import ConsumerRule, Outcome, Use, attr, icl_cost, replace_with_icl_node
from icl_onnx.views import View, ViewAttrs

__all__ = ["IclNodeRule"]

#: The weight input of each ICL operator.
_WEIGHT_INPUT = {MATMUL: 1, GATHER: 0}


def _node_view(node: ir.Node) -> View | None:
    """The view ``node``'s attributes describe, or None when they are malformed."""
    try:
        attrs = ViewAttrs.from_attrs({name: a.value for name, a in node.attributes.items()})
    except (TypeError, ValueError):
        return None
    return View.from_attrs(attrs)


class IclNodeRule(ConsumerRule):
    """The weight of an IclMatMul or IclGather (a model optimized before) reading a view.

    The node's own view must be plain or a transpose, and the member's view must not slice:
    then the two compose into one set of attributes (transposes cancel, scales multiply).
    """

    name = "icl-node"

    def match(self, use: Use) -> Outcome | None:
        """Claims the weight input of an ICL node when it is 2-D and not an exact copy."""
        node = use.node
        if node.domain != DOMAIN or _WEIGHT_INPUT.get(node.op_type) != use.index:
            return None
        if use.rank != 2 or use.view.is_identity:
            return None
        inner = _node_view(node)
        if inner is None:
            return self.fail(f"{node.op_type} has malformed view attributes")
        if (inner.is_identity or inner == View(transpose=True)) and not use.view.has_slice:
            return self.ok()
        return self.fail(
            f"{node.op_type} already reads a {inner.kind} view; views do not compose here"
        )

    def becomes(self, node: ir.Node) -> str:
        """The node keeps its op."""
        return node.op_type

    def cost(self, node: ir.Node, view: View) -> int:
        """An ICL read; a transposed gather reads strided rows."""
        return 3 if node.op_type == GATHER and view.transpose else icl_cost(view)

    def rewrite(self, node: ir.Node, index: int, canonical: ir.Value, view: View) -> bool:
        """Replaces the node by one of the same op reading the composed view of ``canonical``."""
        inner = _node_view(node)
        assert inner is not None
        composed = View(
            transpose=view.transpose ^ inner.transpose,
            scale=view.scale * inner.scale,
            dtype=view.dtype,
        )
        extra = {}
        if attr(node, "delta_transpose", 0):  # factors add to view(W), which composing keeps
            extra["delta_transpose"] = 1
        if node.op_type == GATHER and "output_dtype" in node.attributes:
            extra["output_dtype"] = int(attr(node, "output_dtype", 0))
        elif node.op_type == GATHER and composed.dtype:
            extra["output_dtype"] = ir.DataType[composed.dtype].value
        inputs = list(node.inputs)
        inputs[index] = canonical
        replace_with_icl_node(node, node.op_type, inputs, composed, extra)
        return True
