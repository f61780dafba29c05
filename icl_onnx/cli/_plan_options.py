"""The options that steer the sharing plan, common to ``scan`` and ``optimize``."""

from __future__ import annotations

import argparse

from icl_onnx.analysis import DEFAULT_MIN_ELEMENTS


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--min-elements`` and ``--no-low-rank`` (``args.min_elements``, ``args.low_rank``)."""
    parser.add_argument(
        "--min-elements",
        type=int,
        default=DEFAULT_MIN_ELEMENTS,
        help="ignore initializers with fewer elements (default %(default)s)",
    )
    parser.add_argument(
        "--no-low-rank",
        dest="low_rank",
        action="store_false",
        help="several files: skip the search for tensors that are a first-file tensor plus a "
        "low-rank delta (merged LoRA fine-tunes); the search reads every pair of same-shaped "
        "tensors that is not an exact copy",
    )
