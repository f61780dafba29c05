"""The ``icl-onnx`` command: one module per subcommand, each with ``add_parser`` and ``run``.

Every subcommand's parser is a :class:`CliParser`, so a usage error (a bad flag, a value of
the wrong type, a missing argument) is one line on stderr and exit 2, like the user errors the
commands raise. A library error about one of its arguments (:class:`IclArgumentError`) is
reported under the command's option for that argument: a module's ``FLAGS`` maps argument
names to options where the option is not ``--`` plus the name with dashes.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from icl_onnx.errors import IclArgumentError, IclUserError

#: Subcommand modules under icl_onnx.cli, in help order.
COMMANDS = ["scan", "optimize", "check", "export", "serve", "demo"]


class CliParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        """Prints ``PROG: message (see PROG --help)`` and exits 2."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> CliParser:
    """Returns the top-level parser with every subcommand registered."""
    parser = CliParser(
        prog="icl-onnx",
        description="Share duplicated and transposed weights in ONNX models through ICL operators.",
    )
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CliParser
    )
    for name in COMMANDS:
        module = importlib.import_module(f"icl_onnx.cli.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run, _flags=getattr(module, "FLAGS", {}))
    return parser


def flag_for(argument: str, flags: Mapping[str, str]) -> str:
    """Returns the option that sets a library argument (``input_shapes`` -> ``--input-shapes``)."""
    return flags.get(argument, "--" + argument.replace("_", "-"))


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 ok, 1 check failed, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args))
    except IclArgumentError as e:
        message = e.naming(flag_for(e.argument, args._flags))
        print(f"icl-onnx {args.command}: {message}", file=sys.stderr)
        return e.exit_code
    except IclUserError as e:
        print(f"icl-onnx {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("icl-onnx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
