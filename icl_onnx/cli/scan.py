"""``icl-onnx scan MODEL``: report which initializers are copies or views of another."""

from __future__ import annotations

import argparse

from icl_onnx.analysis import analyze
from icl_onnx.analysis.analyze import DEFAULT_MIN_ELEMENTS
from icl_onnx.cli._format import print_json, print_plan
from icl_onnx.model_io import load_model


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers the ``scan`` subcommand."""
    parser = subparsers.add_parser(
        "scan",
        help="report shared weights (changes nothing)",
        description="Find initializers that are exact or transposed copies of another.",
    )
    parser.add_argument("model", help="ONNX model file")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument(
        "--min-elements",
        type=int,
        default=DEFAULT_MIN_ELEMENTS,
        help="ignore initializers with fewer elements (default %(default)s)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Analyses the model and prints the plan; exit 0."""
    plan = analyze(load_model(args.model), min_elements=args.min_elements)
    if args.json:
        print_json({"model": args.model, **plan.to_dict()})
    else:
        print_plan(plan, args.model)
    return 0
