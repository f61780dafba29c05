"""``icl-onnx export DIR -o OUT``: export a local Hugging Face model, share weights, verify."""

from __future__ import annotations

import argparse

from icl_onnx.cli._progress import add_quiet_argument, cli_progress
from icl_onnx.hf_folder import TASKS

#: Options of ``export`` that set a library argument of another name.
FLAGS = {"path": "--output", "opset_version": "--opset"}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="export a local Hugging Face model folder to an optimized ONNX file",
        description="Load a model folder written by save_pretrained (offline), export it with "
        "torch.onnx.export (dynamo, else TorchScript), share its weights through ICL operators, "
        "and check the ONNX outputs against PyTorch's on example inputs.",
    )
    parser.add_argument("folder", help="folder with config.json and weights")
    parser.add_argument("-o", "--output", required=True, help="optimized ONNX file to write")
    parser.add_argument(
        "--task", choices=list(TASKS), help="model head to load (default: from config.json)"
    )
    parser.add_argument(
        "--exporter",
        choices=["auto", "dynamo", "torchscript"],
        default="auto",
        help="auto: dynamo, falling back to TorchScript (default); dynamo: no fallback",
    )
    parser.add_argument("--batch", type=int, default=2, help="example batch size (default 2)")
    parser.add_argument("--seq-len", type=int, default=16, help="example sequence length")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (exporter default)")
    parser.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance of the check")
    parser.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance of the check")
    parser.add_argument("--keep-original", metavar="PATH", help="also keep the unshared export")
    add_quiet_argument(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Exports, optimizes and verifies; exit 0, 1 when outputs differ, 2 on bad input."""
    from icl_onnx.cli._format import human_bytes, print_plan
    from icl_onnx.hf_folder import example_inputs, load_folder
    from icl_onnx.verified_export import export

    with cli_progress(args.quiet):
        model, task = load_folder(args.folder, args.task)
        inputs = example_inputs(model, task, batch=args.batch, seq=args.seq_len)
        result = export(
            model,
            args.output,
            kwargs=inputs,
            dynamo=args.exporter != "torchscript",
            fallback=args.exporter == "auto",
            opset_version=args.opset,
            atol=args.atol,
            rtol=args.rtol,
            keep_original=args.keep_original,
        )
    print(f"exported {type(model).__name__} ({task}) with the {result.exporter} exporter")
    if result.fallback_reason:
        print(f"  {result.fallback_reason}")
    print_plan(result.optimize.plan, args.output)
    for match in result.outputs:
        print(f"  output {match.name}: max |onnx - torch| {match.max_abs_error:.3g}")
    written = ", ".join(f"{f} ({human_bytes(f.stat().st_size)})" for f in result.files)
    print(f"wrote {written}; outputs match PyTorch")
    return 0
