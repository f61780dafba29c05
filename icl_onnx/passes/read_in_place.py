"""ReadWeightsInPlacePass: every large float MatMul/Gemm weight is read by IclMatMul in place.

ONNX Runtime prepacks the constant weight of a MatMul or Gemm into private memory, once per
session; with prepacking off (``create_session(..., share_across_processes=True)``) it packs
the weight again on every call instead. IclMatMul reads its weight where it lies, so a model
whose large weights all go through it keeps no private copy *and* pays for no packing. This
pass moves each remaining constant float weight (float32, float16, bfloat16; 2-D; at least
``min_elements`` elements; an initializer that is not a graph input) of an ONNX MatMul or Gemm
to IclMatMul with a plain view (a Gemm's ``transB`` and ``alpha`` folded into it), through the
same consumer rules that rewrite shared weights (``icl_onnx.rules``). A Gemm those rules cannot
express (``transA``, a bias that is not 1-D) stays, with the reason logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import onnx_ir as ir

from icl_onnx import schemas
from icl_onnx.analysis.readers import DEFAULT_MIN_ELEMENTS, eligible_initializers
from icl_onnx.analysis.scopes import Scopes
from icl_onnx.ops import DOMAIN, MATMUL, OPSET_VERSION
from icl_onnx.rules import CONSUMER_RULES, Use, cover, node_label
from icl_onnx.rules.base import ConsumerRule, is_onnx
from icl_onnx.rules.gemm import gemm_view
from icl_onnx.views import View

__all__ = ["FLOAT_WEIGHT_TYPES", "ReadWeightsInPlacePass"]

logger = logging.getLogger(__name__)

#: The weight types IclMatMul reads (docs/operators.md) and ORT's float GEMMs prepack.
FLOAT_WEIGHT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16})


def _weights(graph: ir.Graph, min_elements: int, main: bool) -> list[ir.Value]:
    """The constant 2-D float initializers of ``graph`` with at least ``min_elements``."""
    eligible, _ = eligible_initializers(graph, min_elements, main=main)
    return [
        value
        for value in eligible
        if value.const_value.dtype in FLOAT_WEIGHT_TYPES  # type: ignore[union-attr]
        and len(value.const_value.shape) == 2  # type: ignore[union-attr]
    ]


def _read_in_place(node: ir.Node, weight: ir.Value, rules: Sequence[ConsumerRule]) -> bool:
    """Rewrites ``node`` (an ONNX MatMul or Gemm reading ``weight`` as B) to IclMatMul.

    Returns whether it did; the rule that covers the use decides how (and may decline).
    """
    outcome = cover(Use(node, 1, View(), 2), rules)
    if outcome is None or not outcome.covered or outcome.rule.becomes(node) != MATMUL:
        reason = outcome.reason if outcome is not None and outcome.reason else _why_not(node)
        logger.info("%s keeps its weight %s: %s", node_label(node), weight.name, reason)
        return False
    return outcome.rule.rewrite(node, 1, weight, View())


def _why_not(node: ir.Node) -> str:
    """Why IclMatMul cannot take ``node``'s weight when no rule said why.

    The Gemm rule leaves an exact copy it cannot express to the rewire rule without a reason
    (the rewire rule covers it), so the reason is asked of the view it would need.
    """
    if node.op_type == "Gemm":
        _, reason = gemm_view(node, View())
        if reason:
            return reason
    return "not expressible"


class ReadWeightsInPlacePass(ir.passes.InPlacePass):
    """Moves every large constant float weight of a MatMul or Gemm to IclMatMul (plain view).

    Walks the main graph and every subgraph. ``modified`` is true when a node was rewritten.

    Attributes:
        min_elements: weights with fewer elements stay with their MatMul or Gemm.
        consumer_rules: the rules that rewrite each MatMul or Gemm (``icl_onnx.rules``).
    """

    def __init__(
        self,
        min_elements: int = DEFAULT_MIN_ELEMENTS,
        consumer_rules: Sequence[ConsumerRule] = CONSUMER_RULES,
    ) -> None:
        super().__init__()
        self.min_elements = min_elements
        self.consumer_rules = consumer_rules

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Rewrites the MatMul and Gemm nodes in place."""
        modified = False
        for graph in Scopes(model).graphs():
            for weight in _weights(graph, self.min_elements, main=graph is model.graph):
                for node, index in list(weight.uses()):
                    if index == 1 and is_onnx(node) and node.op_type in ("MatMul", "Gemm"):
                        modified |= _read_in_place(node, weight, self.consumer_rules)
        if modified:
            model.opset_imports.setdefault(DOMAIN, OPSET_VERSION)
            schemas.register()  # so onnx.checker and shape inference accept what it wrote
        return ir.passes.PassResult(model, modified=modified)
