"""Analysis: which initializers are copies or views of another (changes nothing)."""

from icl_onnx.analysis.analyze import analyze, run_analysis
from icl_onnx.analysis.plan import Consumer, Member, ShareGroup, SharePlan, Skipped, View

__all__ = [
    "analyze",
    "run_analysis",
    "Consumer",
    "Member",
    "ShareGroup",
    "SharePlan",
    "Skipped",
    "View",
]
