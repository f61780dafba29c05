"""Graph passes of icl-onnx (onnx_ir passes)."""

from icl_onnx import schemas
from icl_onnx.passes.apply_plan import ApplySharePlanPass
from icl_onnx.passes.read_in_place import ReadWeightsInPlacePass
from icl_onnx.passes.share_weights import PlanAndApplySharingPass, ShareWeightsPass

schemas.register()  # the models these passes write pass onnx.checker and shape inference

__all__ = [
    "ApplySharePlanPass",
    "PlanAndApplySharingPass",
    "ReadWeightsInPlacePass",
    "ShareWeightsPass",
]
