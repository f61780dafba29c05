"""PlanSharingPass: plans a model (changes no graph), leaving the plan for the pass that applies it.

The plan is left in ``model.meta`` under ``PLAN_KEY`` (in memory, never saved), where
``ApplySharePlanPass()`` finds it, and ``planned(model)`` reads it: ``scan`` runs the passes up
to this one and prints that plan, ``optimize`` runs on to apply it.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from icl_onnx.analysis.readers import DEFAULT_MIN_ELEMENTS
from icl_onnx.planning.plan import SharePlan
from icl_onnx.planning.planner import plan_sharing
from icl_onnx.rules import CONSUMER_RULES, ConsumerRule

__all__ = ["PLAN_KEY", "PlanSharingPass", "planned"]

#: The ``model.meta`` key of the plan a PlanSharingPass computed on the model.
PLAN_KEY = "icl_onnx.share_plan"


def planned(model: ir.Model) -> SharePlan | None:
    """The plan left in ``model`` by a planning pass and not applied yet, or None."""
    return model.meta.get(PLAN_KEY)


class PlanSharingPass(ir.passes.InPlacePass):
    """Plans the model as it is (constants lifted before); ``modified`` is always False.

    Attributes:
        min_elements: initializers with fewer elements are left alone.
        consumer_rules: the rules every use is offered to (``icl_onnx.rules``).
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
        """Plans ``model`` and leaves the plan in ``model.meta[PLAN_KEY]``."""
        plan = plan_sharing(model, self.min_elements, consumer_rules=self.consumer_rules)
        model.meta[PLAN_KEY] = plan
        return ir.passes.PassResult(model, modified=False)
