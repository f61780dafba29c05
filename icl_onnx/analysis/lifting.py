"""Constant lifting: the step before analysis, so ``Constant`` tensors take part as initializers.

The analysis reads initializers. Large ``Constant`` nodes (at least ``min_elements`` elements,
in the main graph and in subgraphs) are lifted to initializers by onnx-ir's
``LiftConstantsToInitializersPass`` first: the optimize pipeline lifts in place, ``analyze``
lifts on a copy of the model, so ``scan`` reports what ``optimize`` does.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import LiftConstantsToInitializersPass

__all__ = ["lift_constants_pass", "lifted"]


def lift_constants_pass(min_elements: int) -> ir.passes.InPlacePass:
    """The pass that lifts ``Constant`` nodes of at least ``min_elements`` elements."""
    return LiftConstantsToInitializersPass(size_limit=min_elements)


def lifted(model: ir.Model, min_elements: int) -> ir.Model:
    """``model`` with its large constants lifted: a copy when it has ``Constant`` nodes.

    The copy shares the tensors of ``model``; ``model`` is not changed.
    """
    nodes = ir.traversal.RecursiveGraphIterator(model.graph)
    if not any(node.op_type == "Constant" for node in nodes):
        return model
    copy = model.clone()
    lift_constants_pass(min_elements)(copy)
    return copy
