"""``icl-onnx scan MODEL [MODEL ...]``: report which initializers are copies or views of another."""

from __future__ import annotations

import argparse

from icl_onnx.cli._format import print_cross_plan, print_json, print_plan
from icl_onnx.cli._plan_options import add_plan_arguments
from icl_onnx.cli._progress import add_quiet_argument, cli_progress
from icl_onnx.pipeline import scan_file, scan_files


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers the ``scan`` subcommand."""
    parser = subparsers.add_parser(
        "scan",
        help="report shared weights (changes nothing)",
        description="Find initializers that are copies or views (transposed, sliced, scaled, "
        "dtype-cast) of another; with several files, also the groups that cross files.",
    )
    parser.add_argument("model", nargs="+", help="ONNX model file(s)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    add_plan_arguments(parser)
    add_quiet_argument(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Analyses the model(s) and prints the plan; exit 0."""
    if len(args.model) > 1:
        with cli_progress(args.quiet):
            cross = scan_files(args.model, min_elements=args.min_elements, low_rank=args.low_rank)
        if args.json:
            print_json(cross.to_dict())
        else:
            print_cross_plan(cross)
        return 0
    (model,) = args.model
    with cli_progress(args.quiet):
        plan = scan_file(model, min_elements=args.min_elements)
    if args.json:
        print_json({"model": model, **plan.to_dict()})
    else:
        print_plan(plan, model)
    return 0
