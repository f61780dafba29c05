"""``icl-onnx optimize MODEL -o OUT``, ``MODEL... --out-dir DIR`` or ``FOLDER -o OUTDIR``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from icl_onnx.cli._format import (
    batched_table,
    console,
    human_bytes,
    print_cross_plan,
    print_json,
    print_plan,
)
from icl_onnx.cli._plan_options import add_plan_arguments
from icl_onnx.cli._progress import add_quiet_argument, cli_progress
from icl_onnx.errors import IclUserError
from icl_onnx.folders import FolderResult, optimize_folder
from icl_onnx.pipeline import (
    BatchedVariantsResult,
    MultiOptimizeResult,
    OptimizeResult,
    optimize_batched_variants,
    optimize_file,
    optimize_files,
)
from icl_onnx.planning.plan import to_data

R = TypeVar("R")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers the ``optimize`` subcommand."""
    parser = subparsers.add_parser(
        "optimize",
        help="rewrite a model so each shared weight is stored once",
        description="Share copies and transposed copies of weights through ICL operators. "
        "The output is written atomically; OUT may be MODEL. With several models and "
        "--out-dir, writes DIR/<name> for each and one data file holding each unique tensor once. "
        "With a model folder (onnxruntime-genai: genai_config.json; Optimum export: config.json "
        "and model.onnx or decoder_*.onnx), writes OUTDIR ready to run: the models optimized "
        "together, the other files copied, the op library copied in and, for GenAI, named in "
        "genai_config.json.",
    )
    parser.add_argument("model", nargs="+", help="ONNX model file(s), or one model folder")
    parser.add_argument("-o", "--output", help="output ONNX file (one model) or folder (a folder)")
    parser.add_argument("--out-dir", help="output folder (several models optimized together)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--external-data",
        dest="external_data",
        action="store_true",
        default=None,
        help="write weights to OUTPUT.data (the default above 16 MiB of weights, or when the "
        "input has external data): page-aligned, so ONNX Runtime maps them and processes "
        "serving the model share one copy",
    )
    data.add_argument(
        "--no-external-data",
        dest="external_data",
        action="store_false",
        help="keep weights inside the model file (one self-contained file)",
    )
    add_plan_arguments(parser)
    parser.add_argument(
        "--share-quantized",
        action="store_true",
        help="lossy: a float embedding table that a quantized head approximates (listed by "
        "scan as a near-copy) reads the quantized head instead; outputs change",
    )
    parser.add_argument(
        "--read-weights-in-place",
        action="store_true",
        help="also move every other large float MatMul/Gemm weight to IclMatMul, which reads "
        "it where it lies: a session with share_across_processes=True (prepacking off) then "
        "neither copies nor packs any weight",
    )
    parser.add_argument(
        "--batched-variants",
        action="store_true",
        help="MODEL is a base and its fine-tuned variants (the same graph, low-rank changes of "
        "MatMul/Gemm weights): write -o OUT, one model with an input variant_ids (int64, one "
        "per batch row: 0 the base, k the k-th variant) that runs each row with its variant",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace a non-empty output folder (folder input)"
    )
    parser.add_argument("--json", action="store_true", help="print the applied plan as JSON")
    add_quiet_argument(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Optimizes and saves; exit 0."""
    if args.batched_variants:
        return _run_batched(args)
    if args.out_dir is not None:
        if args.output is not None:
            raise IclUserError("give either -o OUT (one model) or --out-dir DIR, not both")
        return _run_many(args)
    if len(args.model) == 1 and Path(args.model[0]).is_dir():
        return _run_folder(args)
    if len(args.model) != 1 or args.output is None:
        raise IclUserError("one model needs -o OUT; several models need --out-dir DIR")
    (model,) = args.model

    def report(result: OptimizeResult) -> None:
        print_plan(result.plan, model)
        for near in result.shared_quantized:
            print(
                f"shared (lossy) {near.table} -> {near.quantized}: max |error| {near.max_error:.3g}"
            )
        written = ", ".join(f"{f} ({human_bytes(f.stat().st_size)})" for f in result.files)
        print(f"wrote {written}" + ("" if result.modified else " (nothing to share)"))

    return _optimize_and_report(
        args,
        lambda: optimize_file(
            model,
            args.output,
            min_elements=args.min_elements,
            external_data=args.external_data,
            share_quantized=args.share_quantized,
            read_weights_in_place=args.read_weights_in_place,
        ),
        lambda result: {
            "model": model,
            "output": args.output,
            "modified": result.modified,
            "files": [str(f) for f in result.files],
            "shared_quantized": [to_data(c) for c in result.shared_quantized],
        },
        report,
    )


def _optimize_and_report(
    args: argparse.Namespace,
    optimize: Callable[[], R],
    summary: Callable[[R], dict[str, Any]],
    report: Callable[[R], None],
) -> int:
    """The steps every form of ``optimize`` shares; exit 0.

    Args:
        args: The parsed command line (``quiet``, ``json``).
        optimize: Runs the optimization (under the progress display) and returns its result,
            which has a ``plan``.
        summary: The result's JSON fields that come before the plan's.
        report: Prints the result for a person.
    """
    with cli_progress(args.quiet):
        result = optimize()
    if args.json:
        print_json({**summary(result), **result.plan.to_dict()})
    else:
        report(result)
    return 0


def _run_many(args: argparse.Namespace) -> int:
    def report(result: MultiOptimizeResult) -> None:
        print_cross_plan(result.plan)
        print(
            f"wrote {', '.join(str(f) for f in result.files)}; the models reference "
            f"{human_bytes(result.tensor_bytes)} of tensors, stored once in "
            f"{human_bytes(result.unique_bytes)}"
        )

    return _optimize_and_report(
        args,
        lambda: optimize_files(
            args.model,
            args.out_dir,
            min_elements=args.min_elements,
            share_quantized=args.share_quantized,
            low_rank=args.low_rank,
            read_weights_in_place=args.read_weights_in_place,
        ),
        lambda result: {
            "files": [str(f) for f in result.files],
            "tensor_bytes": result.tensor_bytes,
            "unique_bytes": result.unique_bytes,
        },
        report,
    )


def _run_folder(args: argparse.Namespace) -> int:
    if args.output is None:
        raise IclUserError("a model folder needs -o OUTDIR")
    if args.external_data is not None:
        raise IclUserError("--external-data does not apply to a folder (it writes one data file)")
    (folder,) = args.model

    def report(result: FolderResult) -> None:
        print_cross_plan(result.plan)
        print(
            f"wrote {result.out_dir} ({result.folder.kind}): {len(result.folder.models)} model(s) "
            f"referencing {human_bytes(result.tensor_bytes)} of tensors stored once in "
            f"{human_bytes(result.unique_bytes)}, {len(result.copied)} other file(s) copied, "
            f"the op library as {result.library.name}"
        )

    return _optimize_and_report(
        args,
        lambda: optimize_folder(
            folder,
            args.output,
            force=args.force,
            min_elements=args.min_elements,
            share_quantized=args.share_quantized,
            low_rank=args.low_rank,
            read_weights_in_place=args.read_weights_in_place,
        ),
        lambda result: {
            "folder": folder,
            "kind": result.folder.kind,
            "output": str(result.out_dir),
            "models": result.folder.models,
            "copied": result.copied,
            "library": str(result.library),
            "tensor_bytes": result.tensor_bytes,
            "unique_bytes": result.unique_bytes,
        },
        report,
    )


def _run_batched(args: argparse.Namespace) -> int:
    if args.out_dir is not None or args.output is None:
        raise IclUserError("--batched-variants writes one model: give -o OUT.onnx, not --out-dir")
    if len(args.model) < 2:
        raise IclUserError("--batched-variants needs the base model and at least one variant")
    if args.share_quantized or args.read_weights_in_place or not args.low_rank:
        raise IclUserError(
            "--batched-variants does not take --share-quantized, --read-weights-in-place or "
            "--no-low-rank"
        )

    def report(result: BatchedVariantsResult) -> None:
        console().print(batched_table(result.batch))
        print_plan(result.plan, args.model[0])
        base = result.output_bytes - result.factor_bytes
        print(
            f"wrote {', '.join(str(f) for f in result.files)}: base weights {human_bytes(base)} "
            f"+ stacked factors {human_bytes(result.factor_bytes)} = "
            f"{human_bytes(result.output_bytes)} for {len(result.input_bytes)} models "
            f"(the inputs hold {human_bytes(sum(result.input_bytes))})"
        )

    return _optimize_and_report(
        args,
        lambda: optimize_batched_variants(
            args.model,
            args.output,
            min_elements=args.min_elements,
            external_data=args.external_data,
        ),
        lambda result: {
            "files": [str(f) for f in result.files],
            "input_bytes": result.input_bytes,
            "output_bytes": result.output_bytes,
            "factor_bytes": result.factor_bytes,
            "batch": to_data(result.batch),
        },
        report,
    )
