"""Moved to ``icl_onnx.planning.planner``; re-exported here."""

from icl_onnx.analysis.readers import DEFAULT_MIN_ELEMENTS
from icl_onnx.planning.planner import analyze, plan_models, plan_sharing

__all__ = ["DEFAULT_MIN_ELEMENTS", "analyze", "plan_models", "plan_sharing"]
