"""Run folders: one writer at a time, never overwritten by accident, replaced safely.

:func:`run_in_folder` wraps what ``train``, ``find``, ``demo`` and ``compare`` do in ``--out``:

* The folder is locked with ``filelock`` (an OS lock on ``DIR/.lrtune.lock`` that the kernel
  drops when the process ends, however it ends: a killed run leaves no stale lock). A second
  writer gets one line naming the running process (its pid, from ``DIR/.lrtune.lock.owner``)
  and exit status 2; the first run's files are not touched.
* A folder that already holds files is refused: ``--resume`` continues a ``train`` run,
  ``--overwrite`` replaces a run.
* ``--overwrite`` moves the old run aside into ``DIR/.lrtune-replaced/`` first; that copy is
  deleted once the new run has succeeded and moved back when the new run fails (an error, a
  NaN stop, Ctrl-C), so a failing replacement loses nothing. If the process is killed outright
  the old run stays in ``.lrtune-replaced/`` and the next run in ``DIR`` says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

from lrtune.cli.common import UsageError

LOCK = ".lrtune.lock"
OWNER = ".lrtune.lock.owner"  # "pid host since command" of the process holding the lock
ASIDE = ".lrtune-replaced"
MARKER = ".lrtune-run"  # written into every run folder: --overwrite replaces only those
RUN_FILES = (MARKER, "summary.json", "history.json", "checkpoints", "tensorboard",
             "lr_find.json", "report.md")  # what marks a run of an older lrtune
_LOCK_FILES = (LOCK, OWNER)


def folder_entries(path: Path) -> list[str]:
    """Names in ``path`` other than the lock's own files (``[]`` when it does not exist)."""
    if not path.is_dir():
        return []
    return sorted(name for name in os.listdir(path) if name not in _LOCK_FILES)


def run_in_folder(out: str | Path, body: Callable[[], int], *, command: str,
                  resume: bool = False, overwrite: bool = False,
                  resume_hint: bool = False) -> int:
    """Run ``body()`` (returning an exit status) as the only writer of the run folder ``out``.

    Args:
        out: the run folder (created if missing; removed again if the run wrote nothing).
        body: does the work; 0 means success (a replaced run is then deleted).
        command: the subcommand, recorded for a second writer's message.
        resume: continue the run in ``out`` (its files are expected).
        overwrite: replace the run in ``out`` (see the module docstring).
        resume_hint: whether to suggest ``--resume`` when ``out`` holds a run.

    Raises:
        UsageError: ``out`` is in use, holds a run (and neither flag was given), holds files
            that are not a run (with ``overwrite``), or holds a run set aside by a killed
            ``--overwrite``.
    """
    from filelock import FileLock, Timeout

    path = Path(out).expanduser()
    created = _missing_folders(path)
    path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path / LOCK, blocking=False)
    try:
        lock.acquire()
    except Timeout:
        _remove_empty(created)
        raise UsageError(f"{out} is in use by another lrtune process ({_owner(path)}); wait for "
                         "it to finish or choose another --out") from None
    try:
        (path / OWNER).write_text(f"pid {os.getpid()} on {socket.gethostname()}, "
                                  f"lrtune {command} since {time.strftime('%H:%M:%S')}\n")
        return _run_guarded(path, str(out), body, resume, overwrite, resume_hint)
    finally:
        # unlinked while still held: a process that opened the file meanwhile sees a lock on a
        # deleted file once it gets it (filelock checks st_nlink) and does not take it for ours
        for name in (OWNER, LOCK):
            with contextlib.suppress(FileNotFoundError):
                (path / name).unlink()
        lock.release()
        _remove_empty(created)


def _run_guarded(path: Path, out: str, body: Callable[[], int], resume: bool, overwrite: bool,
                 resume_hint: bool) -> int:
    entries = folder_entries(path)
    if ASIDE in entries:
        raise UsageError(f"{path / ASIDE} holds a run that an interrupted --overwrite moved "
                         "aside; move or delete it, then run again")
    aside = None
    if entries and not resume:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        if not any(name in RUN_FILES for name in entries):  # never move a user's own files
            raise UsageError(f"{out} holds files that are not an lrtune run ({shown}); "
                             "choose another --out")
        if not overwrite:
            hint = "--resume to continue it or --overwrite" if resume_hint else "--overwrite"
            raise UsageError(f"{out} already holds a run ({shown}); use {hint} to replace it, "
                             "or choose another --out")
        aside = path / ASIDE
        aside.mkdir()
        for name in entries:
            os.replace(path / name, aside / name)
    marked = not (path / MARKER).exists()
    if marked:
        (path / MARKER).write_text("an lrtune run folder (lrtune --overwrite may replace it)\n")
    succeeded = False
    try:
        status = body()
        succeeded = status == 0
        return status
    finally:
        if marked and not succeeded and folder_entries(path) == [MARKER]:
            (path / MARKER).unlink()  # the run stopped before writing anything: leave no trace
        if aside is not None:
            _finish_replacement(path, aside, succeeded)


def _finish_replacement(path: Path, aside: Path, succeeded: bool) -> None:
    """Delete the replaced run after a success; after a failure put it back as it was."""
    if succeeded:
        shutil.rmtree(aside)
        return
    for name in folder_entries(path):
        if name != ASIDE:
            _remove(path / name)
    for name in os.listdir(aside):
        os.replace(aside / name, path / name)
    aside.rmdir()


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink()


def _missing_folders(path: Path) -> list[Path]:
    """The folders ``mkdir(parents=True)`` is about to create, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this run created if it left them empty (a refused run leaves none)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _owner(path: Path) -> str:
    try:
        return (path / OWNER).read_text().strip() or "pid unknown"
    except OSError:
        return "pid unknown"


def add_overwrite_argument(parser) -> None:
    """``--overwrite``: replace the run already in ``--out`` (kept until the new one succeeds)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in --out (it is deleted only once the new run "
                             "has succeeded; a failing run puts it back)")
