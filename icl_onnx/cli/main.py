"""The ``icl-onnx`` command: one module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from icl_onnx.errors import IclUserError

#: Subcommand modules under icl_onnx.cli, in help order.
COMMANDS = ["scan", "optimize", "check", "export", "demo"]


def build_parser() -> argparse.ArgumentParser:
    """Returns the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="icl-onnx",
        description="Share duplicated and transposed weights in ONNX models through ICL operators.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"icl_onnx.cli.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 ok, 1 check failed, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args))
    except IclUserError as e:
        print(f"icl-onnx {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("icl-onnx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
