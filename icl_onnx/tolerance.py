"""The tolerance rule that ``check`` and ``export`` apply to model outputs (Polygraphy's).

An element passes when its absolute error is at most ``atol`` **or** its relative error is at
most ``rtol``. The relative error divides by ``|reference|``; it is 0 where the two values are
equal and infinite where the reference is 0 and the other value is not.
"""

from __future__ import annotations

import numpy as np

__all__ = ["errors", "within_tolerance"]


def errors(reference: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns the absolute and relative error of each element, in float64.

    Args:
        reference: the values to compare against.
        actual: values of the same shape.
    """
    ref = np.asarray(reference, dtype=np.float64)
    absolute = np.abs(np.asarray(actual, dtype=np.float64) - ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(absolute == 0, 0.0, absolute / np.abs(ref))
    return absolute, relative


def within_tolerance(
    absolute: np.ndarray, relative: np.ndarray, atol: float, rtol: float
) -> np.ndarray:
    """Returns where ``absolute <= atol or relative <= rtol`` (NaN errors never pass)."""
    return (absolute <= atol) | (relative <= rtol)
