"""Analysis: which initializers are copies or views of another (changes nothing)."""

from icl_onnx.analysis.plan import (
    Consumer,
    CrossGroup,
    CrossMember,
    CrossPlan,
    Member,
    ShareGroup,
    SharePlan,
    Skipped,
    View,
)
from icl_onnx.analysis.planner import DEFAULT_MIN_ELEMENTS, analyze, plan_models, plan_sharing

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
    "ShareGroup",
    "SharePlan",
    "Skipped",
    "View",
]
