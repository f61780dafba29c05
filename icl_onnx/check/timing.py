"""Run time of the two models, timed alternately, and whether they measurably differ.

``check`` keeps both models' worker processes alive after their memory readings and asks them
for one run at a time, in pairs (original then optimized, then the other way round), so both
models see the same load on the machine. A pair's ratio ``optimized / original`` cancels the
load both runs shared; the spread of the ratios over the pairs is what the load left.

The verdict (``timing_verdict``) calls a difference only when the ratios agree on it: the
10th-90th percentile interval of the ratios must lie on one side of 1.0 and be at most
``MAX_SPREAD`` wide. Pure functions and plain data: nothing is run or printed here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = [
    "FASTER",
    "MAX_SPREAD",
    "MIN_PAIRS",
    "NO_DIFFERENCE",
    "SLOWER",
    "TOO_FEW",
    "TOO_NOISY",
    "TimingReport",
    "summarize_timing",
    "timing_verdict",
]

#: Pairs of runs below which no difference is called (p10 and p90 would be the extremes).
MIN_PAIRS = 5
#: Widest p10-p90 interval of the per-pair ratios at which a difference is still called.
#:
#: An interval wider than 0.5 means the pairs disagree among themselves by more than half a
#: run: the machine's load, not the models, set the run times. Two copies of one model (the
#: demo's BERT, 20 pairs) checked against each other on this project's shared 2-core machine at
#: load averages of 7 to 32 gave intervals 1.0 to 1.5 wide; with so much spread, on which side
#: of 1.0 the outer fifths of 20 pairs fall is left to chance, so no difference is called.
MAX_SPREAD = 0.5

FASTER = "faster"
SLOWER = "slower"
NO_DIFFERENCE = "no measurable difference"
TOO_NOISY = "too noisy to call"
TOO_FEW = "too few runs to call"


@dataclasses.dataclass
class TimingReport:
    """Both models' runs, timed alternately in their own processes, and their per-pair ratios.

    Attributes:
        original_seconds: the original's run times, one per pair.
        optimized_seconds: the optimized model's run times, one per pair.
        ratios: ``optimized / original`` of each pair.
        median_ratio: the median of ``ratios``.
        p10_ratio: their 10th percentile.
        p90_ratio: their 90th percentile.
        verdict: ``faster``, ``slower``, ``no measurable difference``, ``too noisy to call`` or
            ``too few runs to call`` (``timing_verdict``).
        max_spread: the widest p10-p90 interval at which a difference is called.
    """

    original_seconds: list[float]
    optimized_seconds: list[float]
    ratios: list[float]
    median_ratio: float
    p10_ratio: float
    p90_ratio: float
    verdict: str
    max_spread: float = MAX_SPREAD

    @property
    def pairs(self) -> int:
        """The number of alternated pairs of runs."""
        return len(self.ratios)

    @property
    def original_median(self) -> float:
        """The original's median run time in seconds."""
        return float(np.median(self.original_seconds))

    @property
    def optimized_median(self) -> float:
        """The optimized model's median run time in seconds."""
        return float(np.median(self.optimized_seconds))


def timing_verdict(
    ratios: Sequence[float], max_spread: float = MAX_SPREAD, min_pairs: int = MIN_PAIRS
) -> str:
    """Whether the per-pair ratios ``optimized / original`` show a difference.

    Args:
        ratios: one ratio per alternated pair of runs.
        max_spread: the widest p10-p90 interval at which a difference is called.
        min_pairs: fewer ratios than this call nothing.

    Returns:
        ``too few runs to call`` below ``min_pairs``; ``too noisy to call`` when the p10-p90
        interval is wider than ``max_spread`` (wherever it lies); otherwise ``no measurable
        difference`` when it contains 1.0, and ``faster`` or ``slower`` when it lies on one side.
    """
    if len(ratios) < max(1, min_pairs):
        return TOO_FEW
    p10, p90 = np.percentile(np.asarray(ratios, dtype=np.float64), [10, 90])
    if p90 - p10 > max_spread:
        return TOO_NOISY
    if p10 <= 1.0 <= p90:
        return NO_DIFFERENCE
    return FASTER if p90 < 1.0 else SLOWER


def summarize_timing(
    original: Sequence[float], optimized: Sequence[float], max_spread: float = MAX_SPREAD
) -> TimingReport:
    """The report of alternated runs: ``original[i]`` and ``optimized[i]`` form pair ``i``.

    Raises:
        ValueError: the lists differ in length or are empty.
    """
    if len(original) != len(optimized) or not original:
        raise ValueError(
            f"need one run of each model per pair, got {len(original)} and {len(optimized)}"
        )
    ratios = [b / a if a > 0 else float("inf") for a, b in zip(original, optimized, strict=True)]
    median, p10, p90 = np.percentile(np.asarray(ratios, dtype=np.float64), [50, 10, 90])
    return TimingReport(
        original_seconds=list(original),
        optimized_seconds=list(optimized),
        ratios=ratios,
        median_ratio=float(median),
        p10_ratio=float(p10),
        p90_ratio=float(p90),
        verdict=timing_verdict(ratios, max_spread),
        max_spread=max_spread,
    )
