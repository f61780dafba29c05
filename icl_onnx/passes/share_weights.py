"""ShareWeightsPass: lift constants, then share every copy and view (analyse, then apply).

The public pass is an onnx-ir ``Sequential`` of two steps: ``LiftConstantsToInitializersPass``
(large ``Constant`` nodes become initializers, ``icl_onnx.analysis.lifting``) and
``PlanAndApplySharingPass`` (plan the model, ``icl_onnx.analysis.plan_sharing``, and apply the
plan, ``ApplySharePlanPass``). The passes keep no state: to get the plan that was applied, use
``icl_onnx.optimize``, which runs the same steps and returns it.
"""

from __future__ import annotations

import onnx_ir as ir

from icl_onnx.analysis.lifting import lift_constants_pass
from icl_onnx.analysis.readers import DEFAULT_MIN_ELEMENTS
from icl_onnx.passes.apply_plan import ApplySharePlanPass
from icl_onnx.planning.planner import plan_sharing

__all__ = ["PlanAndApplySharingPass", "ShareWeightsPass"]


class PlanAndApplySharingPass(ir.passes.InPlacePass):
    """Plans the model as it is (constants lifted before) and applies the plan.

    Attributes:
        min_elements: initializers with fewer elements are left alone.
    """

    def __init__(self, min_elements: int = DEFAULT_MIN_ELEMENTS) -> None:
        super().__init__()
        self.min_elements = min_elements

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Plans ``model`` and applies the plan in place."""
        return ApplySharePlanPass(plan_sharing(model, self.min_elements))(model)


class ShareWeightsPass(ir.passes.Sequential):
    """Rewrites a model so each group of copies and views holds one canonical initializer.

    Runs constant lifting, then ``PlanAndApplySharingPass``; ``modified`` is true when either
    changed the model.

    Attributes:
        min_elements: tensors (initializers, ``Constant`` nodes) with fewer elements are left
            alone.
    """

    def __init__(self, min_elements: int = DEFAULT_MIN_ELEMENTS) -> None:
        self.min_elements = min_elements
        super().__init__(lift_constants_pass(min_elements), PlanAndApplySharingPass(min_elements))
