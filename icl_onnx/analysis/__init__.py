"""Detection: which initializers are copies or views of another (changes nothing).

The layer below the consumer rules (``icl_onnx.rules``) and the planning
(``icl_onnx.planning``): it finds the sets of tensors and each one's view, and never asks which
rule covers a consumer.
"""

from icl_onnx.analysis.findings import QuantizedNearCopy, Skipped
from icl_onnx.analysis.readers import DEFAULT_MIN_ELEMENTS

__all__ = ["DEFAULT_MIN_ELEMENTS", "QuantizedNearCopy", "Skipped"]
