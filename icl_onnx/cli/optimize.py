"""``icl-onnx optimize MODEL -o OUT``: share weights through ICL operators and save."""

from __future__ import annotations

import argparse

from icl_onnx.analysis.analyze import DEFAULT_MIN_ELEMENTS
from icl_onnx.cli._format import human_bytes, print_json, print_plan
from icl_onnx.optimize import optimize_file


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers the ``optimize`` subcommand."""
    parser = subparsers.add_parser(
        "optimize",
        help="rewrite a model so each shared weight is stored once",
        description="Share copies and transposed copies of weights through ICL operators. "
        "The output is written atomically; OUT may be MODEL.",
    )
    parser.add_argument("model", help="ONNX model file")
    parser.add_argument("-o", "--output", required=True, help="output ONNX file")
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--external-data",
        dest="external_data",
        action="store_true",
        default=None,
        help="write weights to OUTPUT.data",
    )
    data.add_argument(
        "--no-external-data",
        dest="external_data",
        action="store_false",
        help="keep weights inside the model file",
    )
    parser.add_argument(
        "--min-elements",
        type=int,
        default=DEFAULT_MIN_ELEMENTS,
        help="ignore initializers with fewer elements (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the applied plan as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    """Optimizes and saves; exit 0."""
    result = optimize_file(
        args.model, args.output, min_elements=args.min_elements, external_data=args.external_data
    )
    if args.json:
        print_json(
            {
                "model": args.model,
                "output": args.output,
                "modified": result.modified,
                "files": [str(f) for f in result.files],
                **result.plan.to_dict(),
            }
        )
        return 0
    print_plan(result.plan, args.model)
    written = ", ".join(f"{f} ({human_bytes(f.stat().st_size)})" for f in result.files)
    print(f"wrote {written}" + ("" if result.modified else " (nothing to share)"))
    return 0
