"""The ``lrtune`` command: ``main()`` plus one module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` and ``run(args) -> int``. Errors a
user can cause are raised as ``UsageError`` (or ``ValueError`` from the library) and printed
as one line with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lrtune.cli.common import UsageError

SUBCOMMANDS = ["find", "schedule", "train", "compare", "demo", "predict"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (no usage dump), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lrtune",
        description="Tune the learning rate and the hyperparameters that move with it.",
    )
    from lrtune import __version__

    parser.add_argument("--version", action="version", version=f"lrtune {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"lrtune.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (UsageError, ValueError, FileNotFoundError) as exc:
        print(f"lrtune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lrtune {args.command}: interrupted", file=sys.stderr)
        return 130
