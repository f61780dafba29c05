"""``icl-onnx demo``: export a tied-embedding model, then scan, optimize and check it."""

from __future__ import annotations

import argparse
from pathlib import Path

from icl_onnx.errors import IclUserError

ARCHS = ("bert", "llama")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run scan → optimize → check on a built-in tied-embedding model",
        description="Build a transformers model with random weights (no download), export it "
        "to ONNX, then run scan, optimize and check on it.",
    )
    parser.add_argument(
        "--arch",
        choices=ARCHS,
        default="bert",
        help="bert (ForMaskedLM) or llama (causal LM, tied embeddings)",
    )
    parser.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=30000)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--out-dir", default="out/demo", help="folder for the files (created)")
    return parser


def _export(args: argparse.Namespace, path: Path) -> None:
    try:
        from icl_onnx.models import build_model
        from icl_onnx.torch_export import export_onnx
    except ImportError as e:  # torch/transformers are the `export` extra
        raise IclUserError(
            f"demo needs torch and transformers: pip install 'icl-onnx[export]' ({e})"
        ) from e
    module, inputs = build_model(
        args.arch, hidden=args.hidden, vocab=args.vocab, layers=args.layers
    )
    export_onnx(module, path, inputs, dynamo=args.exporter == "dynamo")


def run(args: argparse.Namespace) -> int:
    """Runs the demo; returns check's exit code."""
    from icl_onnx.cli.main import main

    if args.hidden <= 0 or args.hidden % 12 or args.vocab < 2 or args.layers < 1:
        raise IclUserError(
            "--hidden must be a positive multiple of 12 (12 attention heads), "
            "--vocab at least 2 and --layers at least 1"
        )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    original = out / f"{args.arch}-{args.exporter}.onnx"
    optimized = out / f"{args.arch}-{args.exporter}.icl.onnx"
    print(
        f"== export: {args.arch} (hidden {args.hidden}, vocab {args.vocab}, "
        f"{args.layers} layers, random weights), {args.exporter} exporter → {original}",
        flush=True,
    )
    _export(args, original)
    for step, argv in (
        ("scan", ["scan", str(original)]),
        ("optimize", ["optimize", str(original), "-o", str(optimized)]),
        ("check", ["check", str(original), str(optimized)]),
    ):
        print(f"\n== {step}", flush=True)
        code = main(argv)
        if code:
            return code
    return 0
