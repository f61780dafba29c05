"""Is a time ratio above its goal, or within the noise of the machine? Pure arithmetic.

A benchmark that alternates two sessions run by run reads, per cell, per-run time ratios. Two
things move their median between runs of identical code: the rounds' own scatter (load from
other processes) and where the weights landed in memory (a *placement*: fresh allocations can
read several percent apart, whatever the kernel). :func:`median_interval` gives the median a
90% interval that counts both (a bootstrap that resamples placements, then rounds within
each); an A/A control (the same kernel on its own copy of the weights, timed in the same
rounds) says how far identical kernels read apart in the cell; :func:`verdict` combines them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "ABOVE",
    "MEETS",
    "VERDICTS",
    "WITHIN_NOISE",
    "aa_deviation",
    "median_interval",
    "verdict",
]

MEETS = "meets"
WITHIN_NOISE = "within noise"
ABOVE = "above"
VERDICTS = (MEETS, WITHIN_NOISE, ABOVE)

#: Bootstrap resamples behind each interval, and the seed (intervals are reproducible).
RESAMPLES = 2000
SEED = 0


def median_interval(
    groups: Sequence[Sequence[float]], level: float = 0.9, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """A bootstrap interval of the median of pooled per-run ratios, one group per placement.

    Each resample draws as many placements as there are, with replacement, then as many
    rounds as each drawn placement has, with replacement, and takes the median of the pooled
    draw (a two-stage bootstrap: a placement counts as one draw, so placements that disagree
    widen the interval; with one placement it is the plain bootstrap over rounds). Returns
    the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those medians.

    Args:
        groups: per-run ratios of each placement; none empty.
        level: the interval's coverage.
        resamples: bootstrap resamples.
    """
    if not groups or any(len(g) == 0 for g in groups):
        raise ValueError("median_interval needs at least one placement, each with a round")
    sizes = np.array([len(g) for g in groups])
    width = int(sizes.max())
    data = np.full((len(groups), width), np.nan)
    for i, g in enumerate(groups):
        data[i, : len(g)] = g
    rng = np.random.default_rng(SEED)
    picks = rng.integers(0, len(groups), (resamples, len(groups)))  # placements drawn
    picked_sizes = sizes[picks][..., None]  # [resamples, placements, 1]
    rows = (rng.random((resamples, len(groups), width)) * picked_sizes).astype(int)
    values = data[picks[..., None], rows]
    values[np.arange(width) >= picked_sizes] = np.nan  # a smaller placement's unused slots
    medians = np.nanmedian(values.reshape(resamples, -1), axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(medians, [tail, 1 - tail])
    return float(low), float(high)


def aa_deviation(aa_low: float, aa_high: float) -> float:
    """How far from 1.00 identical kernels read: the A/A interval's largest distance from 1."""
    return max(abs(aa_low - 1.0), abs(aa_high - 1.0))


def verdict(
    ratio: float,
    low: float,
    goal: float = 1.0,
    aa_low: float | None = None,
    aa_high: float | None = None,
) -> str:
    """``meets``, ``within noise`` or ``above`` for a median time ratio against its goal.

    - ``meets``: the median is at most ``goal``.
    - ``above``: the median is above ``goal`` and neither noise source explains it: the low
      end of its interval (:func:`median_interval`) is above ``goal`` (not the rounds' scatter
      or the placements), and, when an A/A control was measured, the median is above
      ``goal * (1 + d)`` with d = :func:`aa_deviation` of the A/A's interval (not what
      identical kernels read apart in this cell).
    - ``within noise``: otherwise.

    Args:
        ratio: the median of the per-run ratios (time measured / time of the bar).
        low: the low end of that median's interval.
        goal: the ratio to meet.
        aa_low: the low end of the A/A median's interval (None: no A/A control).
        aa_high: its high end.
    """
    if ratio <= goal:
        return MEETS
    if low <= goal:
        return WITHIN_NOISE
    if aa_low is not None and aa_high is not None:
        if ratio <= goal * (1.0 + aa_deviation(aa_low, aa_high)):
            return WITHIN_NOISE
    return ABOVE
