"""Names of the ICL operators (docs/operators.md); their attributes are in icl_onnx.views."""

from __future__ import annotations

DOMAIN = "ai.icl"
OPSET_VERSION = 1
MATMUL = "IclMatMul"
GATHER = "IclGather"
GATHER_BLOCK_QUANTIZED = "IclGatherBlockQuantized"

__all__ = ["DOMAIN", "OPSET_VERSION", "MATMUL", "GATHER", "GATHER_BLOCK_QUANTIZED"]
