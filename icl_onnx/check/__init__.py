"""Parity and memory of an optimized model against its original (``icl-onnx check``).

``check_models(original, optimized, **options)`` runs each model in its own subprocess with the
ICL op library loaded, on the same seeded inputs, and returns a ``CheckReport``.
``check_batched_variants(batched, models)`` checks a batched-variants model row by row against
the base and each variant (``BatchedCheckReport``).
"""

from icl_onnx.check.api import PROVIDER_ALIASES, check_models, memory_regressions
from icl_onnx.check.batched import BatchedCheckReport, RowParity, check_batched_variants
from icl_onnx.check.compare import DEFAULT_TOLERANCES, ERROR_STATS
from icl_onnx.check.report import (
    CheckReport,
    MemoryReport,
    ModelMeasurement,
    NodePlacement,
    OutputError,
    ParityReport,
)
from icl_onnx.check.timing import TimingReport, timing_verdict

__all__ = [
    "BatchedCheckReport",
    "RowParity",
    "check_batched_variants",
    "CheckReport",
    "DEFAULT_TOLERANCES",
    "ERROR_STATS",
    "MemoryReport",
    "ModelMeasurement",
    "NodePlacement",
    "OutputError",
    "PROVIDER_ALIASES",
    "ParityReport",
    "TimingReport",
    "check_models",
    "memory_regressions",
    "timing_verdict",
]
