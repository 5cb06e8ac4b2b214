"""The ``lrtune`` command: ``main()`` plus one module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` and ``run(args) -> int``. Errors a
user can cause are raised as ``UsageError`` (or ``ValueError`` from the library) and printed
as one line with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import warnings

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


# OS errors a user fixes (space, permissions, paths) rather than bugs: one line, not a traceback
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                         errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG,
                         errno.ENOTEMPTY})
DISTRIBUTED_COMMANDS = ("find", "train")  # the ones that run under torchrun (WORLD_SIZE > 1)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    joined = False  # whether this call started the process group (and so ends it)
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            joined = _join_process_group(args)
        with warnings.catch_warnings():  # restores the caller's showwarning afterwards
            warnings.showwarning = _one_line_warnings(args.command, warnings.showwarning)
            return int(args.run(args) or 0)
    except (UsageError, ValueError, FileNotFoundError) as exc:
        print(f"lrtune {args.command}{_rank_tag()}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`lrtune ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # 128 + SIGPIPE, what a shell reports for a command the pipe ended
    except OSError as exc:
        if exc.errno not in USER_ERRNOS:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        kept = ("; the files written before (checkpoints included) are complete"
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "")
        print(f"lrtune {args.command}{_rank_tag()}: error: {exc.strerror}{where}{kept}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lrtune {args.command}{_rank_tag()}: interrupted", file=sys.stderr)
        return 130
    finally:
        if joined:
            from lrtune import distributed

            distributed.teardown()


def _one_line_warnings(command: str, show):
    """``warnings.showwarning`` for the command: lrtune's own warnings as one line,
    ``lrtune COMMAND: warning: ...`` (no source file and line, which mean nothing to a CLI
    user); anyone else's as ``show`` prints them."""

    def one_line(message, category, filename, lineno, file=None, line=None):
        if category.__module__.split(".")[0] != "lrtune":
            return show(message, category, filename, lineno, file, line)
        print(f"lrtune {command}{_rank_tag()}: warning: {message}", file=file or sys.stderr)
        return None

    return one_line


def _rank_tag() -> str:
    """`` (rank R/W)`` under torchrun: an error may hit one rank only; each reports its own."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return f" (rank {os.environ.get('RANK', '?')}/{world})" if world > 1 else ""


def _join_process_group(args) -> bool:
    """Under torchrun: join the group (gloo on CPU, NCCL on CUDA) and use this rank's device.

    Returns whether the group was started here (a caller that already has one keeps it).
    """
    if args.command not in DISTRIBUTED_COMMANDS:
        raise UsageError(f"only {' and '.join(DISTRIBUTED_COMMANDS)} run under torchrun "
                         f"(WORLD_SIZE={os.environ['WORLD_SIZE']}); run {args.command} in one "
                         "process")
    import torch.distributed as dist

    from lrtune import distributed

    started = not dist.is_initialized()
    args.device = str(distributed.setup_from_env(args.device))
    return started
