"""Output comparison: absolute and relative error, an error statistic, NaN/Inf detection.

An element (or a statistic, for the non-elementwise modes) passes by the rule of
:mod:`icl_onnx.tolerance`: absolute error at most ``atol`` **or** relative error (against the
original) at most ``rtol``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from icl_onnx.check.report import OutputError
from icl_onnx.tolerance import errors, within_tolerance

__all__ = ["ERROR_STATS", "DEFAULT_TOLERANCES", "Tolerance", "default_tolerance", "compare_outputs"]

#: Error statistics ``check`` understands.
ERROR_STATS = ("elementwise", "max", "mean", "median", "quantile")

#: Default (atol, rtol) by output dtype name; types not listed must match exactly.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-8, 1e-7),
    "float32": (1e-5, 1e-4),
    "float16": (1e-3, 1e-2),
    "bfloat16": (1e-2, 1e-2),
}


class Tolerance:
    """Per-output settings with a default: ``Tolerance(default, {"logits": value})``."""

    def __init__(self, default=None, per_output: Mapping[str, object] | None = None):
        self.default = default
        self.per_output = dict(per_output or {})

    def get(self, name: str, fallback):
        """Returns the value for ``name``: its own, else the default, else ``fallback``."""
        if name in self.per_output:
            return self.per_output[name]
        return fallback if self.default is None else self.default


def default_tolerance(dtype: np.dtype) -> tuple[float, float]:
    """Returns the default (atol, rtol) for outputs of ``dtype``."""
    return DEFAULT_TOLERANCES.get(np.dtype(dtype).name, (0.0, 0.0))


def compare_outputs(
    names: Sequence[str],
    original: Sequence[Mapping[str, np.ndarray]],
    optimized: Sequence[Mapping[str, np.ndarray]],
    *,
    atol: Tolerance,
    rtol: Tolerance,
    error_stat: Tolerance,
    quantile: float = 0.99,
    allow_nonfinite: bool = False,
) -> list[OutputError]:
    """Compares each named output over all iterations.

    Args:
        names: output names, in report order.
        original: the original model's outputs, one mapping per iteration.
        optimized: the optimized model's outputs, one mapping per iteration.
        atol: absolute tolerance per output (default by dtype).
        rtol: relative tolerance per output (default by dtype).
        error_stat: one of ``ERROR_STATS`` per output (default ``elementwise``).
        quantile: the quantile for the ``quantile`` statistic.
        allow_nonfinite: when False any NaN or Inf fails the output; when True NaN/Inf must
            appear at the same places in both outputs.
    """
    results = []
    for name in names:
        ref = [np.asarray(o[name]) for o in original]
        got = [np.asarray(o[name]) for o in optimized]
        d_atol, d_rtol = default_tolerance(ref[0].dtype)
        result = OutputError(
            name=name,
            dtype=str(ref[0].dtype),
            shape=list(ref[0].shape),
            atol=float(atol.get(name, d_atol)),
            rtol=float(rtol.get(name, d_rtol)),
            error_stat=str(error_stat.get(name, "elementwise")),
            quantile=quantile,
        )
        _fill(result, ref, got, allow_nonfinite)
        results.append(result)
    return results


def _fill(
    r: OutputError, ref: list[np.ndarray], got: list[np.ndarray], allow_nonfinite: bool
) -> None:
    for i, (a, b) in enumerate(zip(ref, got, strict=True)):
        if a.shape != b.shape or a.dtype != b.dtype:
            r.passed = False
            r.reason = (
                f"iteration {i}: optimized output is {b.dtype}{list(b.shape)}, "
                f"original {a.dtype}{list(a.shape)}"
            )
            return
    a = np.concatenate([x.reshape(-1) for x in ref]).astype(np.float64)
    b = np.concatenate([x.reshape(-1) for x in got]).astype(np.float64)
    r.elements = int(a.size)
    reasons = _nonfinite(r, a, b, allow_nonfinite)
    finite = np.isfinite(a) & np.isfinite(b)
    absdiff, reldiff = errors(a[finite], b[finite])
    if absdiff.size:
        r.max_abs, r.max_rel = float(absdiff.max()), float(reldiff.max())
        r.mean_abs = float(absdiff.mean())
    r.mismatches = int((~within_tolerance(absdiff, reldiff, r.atol, r.rtol)).sum())
    if r.error_stat == "elementwise":
        reasons += _elementwise(r, absdiff, reldiff)
    else:
        reasons += _statistic(r, absdiff, reldiff)
    r.passed = not reasons
    r.reason = "; ".join(reasons)


def _nonfinite(r: OutputError, a: np.ndarray, b: np.ndarray, allow_nonfinite: bool) -> list[str]:
    """Counts NaN/Inf in both outputs; returns why they fail the output, if they do."""
    bad_a, bad_b = ~np.isfinite(a), ~np.isfinite(b)
    r.nonfinite_original, r.nonfinite_optimized = int(bad_a.sum()), int(bad_b.sum())
    if not (r.nonfinite_original or r.nonfinite_optimized):
        return []
    if not allow_nonfinite:
        return [
            f"NaN/Inf: {r.nonfinite_original} in the original, "
            f"{r.nonfinite_optimized} in the optimized"
        ]
    same = np.array_equal(bad_a, bad_b) and np.array_equal(a[bad_a], b[bad_b], equal_nan=True)
    return [] if same else ["NaN/Inf at different places in the two outputs"]


def _elementwise(r: OutputError, absdiff: np.ndarray, reldiff: np.ndarray) -> list[str]:
    """Every element must pass; returns the failure, if any."""
    r.stat_abs, r.stat_rel = r.max_abs, r.max_rel
    # The smallest atol passing with this rtol covers every element outside rtol; likewise.
    r.passing_atol = float(absdiff[reldiff > r.rtol].max(initial=0.0))
    r.passing_rtol = float(reldiff[absdiff > r.atol].max(initial=0.0))
    if not r.mismatches:
        return []
    return [
        f"{r.mismatches} of {r.elements} elements outside atol={r.atol:g}/rtol={r.rtol:g} "
        f"(max abs {r.max_abs:.3g}, max rel {r.max_rel:.3g})"
    ]


def _statistic(r: OutputError, absdiff: np.ndarray, reldiff: np.ndarray) -> list[str]:
    """The error statistic must pass; returns the failure, if any."""
    r.stat_abs = _stat(absdiff, r.error_stat, r.quantile)
    r.stat_rel = _stat(reldiff, r.error_stat, r.quantile)
    r.passing_atol = 0.0 if r.stat_rel <= r.rtol else r.stat_abs
    r.passing_rtol = 0.0 if r.stat_abs <= r.atol else r.stat_rel
    if within_tolerance(np.float64(r.stat_abs), np.float64(r.stat_rel), r.atol, r.rtol):
        return []
    return [
        f"{r.error_stat} error abs {r.stat_abs:.3g} > atol={r.atol:g} and "
        f"rel {r.stat_rel:.3g} > rtol={r.rtol:g}"
    ]


def _stat(values: np.ndarray, stat: str, quantile: float) -> float:
    if values.size == 0:
        return 0.0
    if stat == "max":
        return float(values.max())
    if stat == "mean":
        return float(values.mean())
    if stat == "median":
        return float(np.median(values))
    if stat == "quantile":
        return float(np.quantile(values, quantile))
    raise ValueError(f"unknown error statistic {stat!r}; use one of {', '.join(ERROR_STATS)}")
