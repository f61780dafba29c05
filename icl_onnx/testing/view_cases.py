"""The views the kernel tests run: one of each attribute and a combination of all."""

from __future__ import annotations


def view_cases(k: int, n: int) -> dict[str, tuple[dict[str, int | float], tuple[int, int]]]:
    """Returns view name -> (attributes, stored W shape) such that view(W) is [k, n]."""
    return {
        "plain": ({}, (k, n)),
        "transpose": ({"transpose": 1}, (n, k)),
        "row_slice": ({"slice_axis": 0, "slice_start": 3, "slice_size": k}, (k + 7, n)),
        "column_slice": ({"slice_axis": 1, "slice_start": 5, "slice_size": n}, (k, n + 9)),
        "scale": ({"scale": 0.37}, (k, n)),
        "slice_transpose_scale": (
            {"slice_axis": 1, "slice_start": 2, "slice_size": k, "transpose": 1, "scale": -1.5},
            (n, k + 6),
        ),
    }
