"""Moved to ``icl_onnx.planning.plan`` (and ``View`` to ``icl_onnx.views``); re-exported here."""

from icl_onnx.analysis.findings import QuantizedNearCopy, Skipped
from icl_onnx.planning.plan import (
    Consumer,
    CrossGroup,
    CrossMember,
    CrossPlan,
    Member,
    ShareGroup,
    SharePlan,
    to_data,
)
from icl_onnx.views import View, ir_field

__all__ = [
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
    "ir_field",
    "to_data",
]
