"""Names and attribute defaults of the ICL operators (see docs/operators.md)."""

from __future__ import annotations

DOMAIN = "ai.icl"
OPSET_VERSION = 1
MATMUL = "IclMatMul"
GATHER = "IclGather"

#: View attributes shared by both operators, with their defaults.
VIEW_DEFAULTS: dict[str, int | float] = {
    "slice_axis": 0,
    "slice_start": 0,
    "slice_size": -1,
    "transpose": 0,
    "scale": 1.0,
}

__all__ = ["DOMAIN", "OPSET_VERSION", "MATMUL", "GATHER", "VIEW_DEFAULTS"]
