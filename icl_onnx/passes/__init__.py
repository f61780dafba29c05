"""Graph passes of icl-onnx (onnx_ir passes)."""

from icl_onnx.passes.apply_plan import ApplySharePlanPass
from icl_onnx.passes.share_weights import PlanAndApplySharingPass, ShareWeightsPass

__all__ = ["ApplySharePlanPass", "PlanAndApplySharingPass", "ShareWeightsPass"]
