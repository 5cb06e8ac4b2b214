"""Checkpoint files: atomic writes, safe loads (``weights_only=True``), RNG state, model checks."""

from __future__ import annotations

import contextlib
import io
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "lrtune.checkpoint"
FORMAT_VERSION = 1
TMP_SUFFIX = ".lrtune-tmp"


def atomic_write_bytes(data: bytes, path: str | Path) -> Path:
    """Write ``data`` to ``path`` so that a crash at any moment leaves the old file or the new one.

    The bytes go to a temporary file in the same folder, which is flushed and fsynced, then
    renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows); finally the folder is
    fsynced so the rename itself survives a power cut.

    Examples:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
        >>> _ = atomic_write_bytes(b"one", target); _ = atomic_write_bytes(b"two", target)
        >>> target.read_bytes(), sorted(p.name for p in target.parent.iterdir())
        (b'two', ['a.bin'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600: give what open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux).

    Examples:
        >>> old = os.umask(0o027); current_umask() == 0o027; _ = os.umask(old)
        True
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (a brief window, only at a write)
    os.umask(mask)
    return mask


def atomic_write_text(text: str, path: str | Path) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(text.encode("utf-8"), path)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder for fsync; its rename is durable enough
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary files a killed writer left in ``folder``; returns what was removed."""
    folder = Path(folder)
    stale = sorted(folder.glob(f".*{TMP_SUFFIX}")) if folder.is_dir() else []
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale


def serialize(state: dict[str, Any]) -> bytes:
    """``torch.save`` into memory: serialise once, write to several files."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def load_checkpoint(path: str | Path, *, require: tuple[str, ...] = ("model",)) -> dict[str, Any]:
    """Load a checkpoint written by the Trainer, tensors on the CPU, never unpickling code.

    Args:
        path: the ``.pt`` file.
        require: entries the caller reads (``"model"`` by default); a checkpoint without one
            is refused here, in one line, rather than with a ``KeyError`` later.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable lrtune checkpoint, or lacks a required entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, foreign or malicious pickle, not a torch file ...
        # torch's own text advises weights_only=False: never pass that on for a file from elsewhere
        raise ValueError(f"{path} is not an lrtune checkpoint (or is unsafe to load)") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an lrtune checkpoint (no {FORMAT!r} marker)")
    if not isinstance(state.get("version", 0), int) or state.get("version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format version {state['version']!r}; this lrtune reads up to "
            f"{FORMAT_VERSION}"
        )
    missing = [key for key in require if key not in state]
    if missing:
        raise ValueError(f"{path} is an incomplete lrtune checkpoint: no {', '.join(missing)} "
                         "entry")
    if "model" in require and not isinstance(state["model"], dict):
        raise ValueError(f"{path} is an incomplete lrtune checkpoint: its model entry is not a "
                         "state dict")
    return state


def check_model_state(model: nn.Module, saved: dict[str, torch.Tensor], source: str) -> None:
    """Raise a ValueError naming every key or shape that differs between checkpoint and model."""
    own = model.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    shapes = [
        f"{k}: checkpoint {list(saved[k].shape)} vs model {list(own[k].shape)}"
        for k in own
        if k in saved and tuple(saved[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {', '.join(missing)}")
    if unexpected:
        problems.append(f"not in the model: {', '.join(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch: {'; '.join(shapes)}")
    if problems:
        raise ValueError(
            f"checkpoint {source} does not match the model ({type(model).__name__}): "
            + "; ".join(problems)
        )


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), NumPy and Python RNG states, in types ``weights_only`` loads."""
    # NumPy's legacy global RNG is what user code seeded with np.random.seed, so save it
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    numpy_state = (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    np.random.set_state(numpy_state)  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
