"""Graph passes of icl-onnx (onnx_ir passes); ``sharing_passes`` declares their order."""

from icl_onnx.passes.apply_plan import ApplySharePlanPass
from icl_onnx.passes.batch_variants import VARIANT_IDS, BatchVariantsPass
from icl_onnx.passes.plan_sharing import PLAN_KEY, PlanSharingPass, planned
from icl_onnx.passes.read_in_place import ReadWeightsInPlacePass
from icl_onnx.passes.share_quantized import ShareQuantizedPass
from icl_onnx.passes.share_weights import (
    ShareWeightsPass,
    SharingOptions,
    planning_index,
    sharing_passes,
)

__all__ = [
    "PLAN_KEY",
    "VARIANT_IDS",
    "ApplySharePlanPass",
    "BatchVariantsPass",
    "PlanSharingPass",
    "ReadWeightsInPlacePass",
    "ShareQuantizedPass",
    "ShareWeightsPass",
    "SharingOptions",
    "planned",
    "planning_index",
    "sharing_passes",
]
