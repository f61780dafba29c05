"""Planning: the SharePlan of a model, or of several models planned together (changes nothing).

Above detection (``icl_onnx.analysis``) and the consumer rules (``icl_onnx.rules``): it chooses
each share set's canonical tensor and the rule of every consumer (``groups.py``), plans the sets
that cross models (``crossmodel.py``) and the low-rank variants (``variants.py``), and returns
the plan (``plan.py``) that ``ApplySharePlanPass`` executes.
"""

from icl_onnx.analysis.findings import QuantizedNearCopy, Skipped
from icl_onnx.analysis.readers import DEFAULT_MIN_ELEMENTS
from icl_onnx.planning.plan import (
    Consumer,
    CrossGroup,
    CrossMember,
    CrossPlan,
    Member,
    ShareGroup,
    SharePlan,
)
from icl_onnx.planning.planner import analyze, plan_models, plan_sharing
from icl_onnx.views import View

__all__ = [
    "DEFAULT_MIN_ELEMENTS",
    "analyze",
    "plan_models",
    "plan_sharing",
    "Consumer",
    "CrossGroup",
    "CrossMember",
    "CrossPlan",
    "Member",
    "QuantizedNearCopy",
    "ShareGroup",
    "SharePlan",
    "Skipped",
    "View",
]
