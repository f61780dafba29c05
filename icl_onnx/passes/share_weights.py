"""The sharing passes in order, declared once, and ShareWeightsPass, which runs them.

``sharing_passes(options)`` is the one statement of the pipeline: the lossy quantized sharing
(only when asked for), constant lifting (``icl_onnx.analysis.lifting``), batching a base's
variants (``BatchVariantsPass``, only when given), planning
(``PlanSharingPass``) and applying (``ApplySharePlanPass``). ``icl_onnx.pipeline`` runs it for
``optimize`` and, up to the planning pass, for ``scan``; with several models the planning pass
is where the models are planned together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import onnx_ir as ir

from icl_onnx.analysis.lifting import lift_constants_pass
from icl_onnx.analysis.readers import DEFAULT_MIN_ELEMENTS
from icl_onnx.passes.apply_plan import ApplySharePlanPass
from icl_onnx.passes.batch_variants import BatchVariantsPass
from icl_onnx.passes.plan_sharing import PlanSharingPass
from icl_onnx.passes.read_in_place import ReadWeightsInPlacePass
from icl_onnx.passes.share_quantized import ShareQuantizedPass
from icl_onnx.rules import CONSUMER_RULES, ConsumerRule

__all__ = ["SharingOptions", "ShareWeightsPass", "planning_index", "sharing_passes"]


@dataclasses.dataclass(frozen=True)
class SharingOptions:
    """What the sharing passes do.

    Attributes:
        min_elements: tensors (initializers, ``Constant`` nodes) with fewer elements are left
            alone.
        share_quantized: first make float tables read their quantized near-copies (lossy;
            ``ShareQuantizedPass``).
        consumer_rules: the rules every use is offered to (``icl_onnx.rules``).
        read_weights_in_place: last, move every other large float MatMul/Gemm weight to
            IclMatMul (``ReadWeightsInPlacePass``), so a session with prepacking off
            (``share_across_processes=True``) neither copies nor packs any weight.
    """

    min_elements: int = DEFAULT_MIN_ELEMENTS
    share_quantized: bool = False
    consumer_rules: Sequence[ConsumerRule] = CONSUMER_RULES
    read_weights_in_place: bool = False


def sharing_passes(
    options: SharingOptions = SharingOptions(), batch: BatchVariantsPass | None = None
) -> list[ir.passes.PassBase]:
    """The passes that share a model's copies and views, in the order they run.

    ``batch`` (run on a base model) makes it serve its variants row by row, after constant
    lifting and before planning, so the within-model sharing plans the batched graph.
    """
    passes: list[ir.passes.PassBase] = []
    if options.share_quantized:
        passes.append(ShareQuantizedPass(min_elements=options.min_elements))
    passes.append(lift_constants_pass(options.min_elements))
    if batch is not None:
        passes.append(batch)
    passes += [
        PlanSharingPass(options.min_elements, options.consumer_rules),
        ApplySharePlanPass(),
    ]
    if options.read_weights_in_place:
        passes.append(ReadWeightsInPlacePass(options.min_elements, options.consumer_rules))
    return passes


def planning_index(passes: Sequence[ir.passes.PassBase]) -> int:
    """The position of the planning pass in ``passes`` (``scan`` runs up to it, inclusive)."""
    return next(i for i, p in enumerate(passes) if isinstance(p, PlanSharingPass))


class ShareWeightsPass(ir.passes.Sequential):
    """Rewrites a model so each share set of copies and views holds one canonical initializer.

    Runs ``sharing_passes`` (lifting, planning, applying); ``modified`` is true when any
    changed the model. The plan is applied and dropped; ``icl_onnx.optimize`` returns it.

    Attributes:
        min_elements: tensors (initializers, ``Constant`` nodes) with fewer elements are left
            alone.
    """

    def __init__(self, min_elements: int = DEFAULT_MIN_ELEMENTS) -> None:
        self.min_elements = min_elements
        super().__init__(*sharing_passes(SharingOptions(min_elements)))
