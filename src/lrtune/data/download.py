"""Verified downloads into a cache, or the user's own folder of files (``--data-dir``).

pooch streams each file to a temporary name next to its destination, checks its sha256 and
only then moves it into place, so a corrupt or tampered download never stays in the cache; a
cached file whose hash no longer matches is downloaded again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60


class DownloadError(ValueError):
    """A dataset's files could not be downloaded; the message says how to give them instead."""


@dataclass(frozen=True)
class RemoteFile:
    """A file of a dataset, as its mirrors serve it, with its published sha256."""

    name: str
    sha256: str


def cache_dir() -> Path:
    """``$LRTUNE_CACHE`` when set, otherwise the platform's cache folder for lrtune."""
    env = os.environ.get("LRTUNE_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("lrtune"))


@contextmanager
def _quiet_pooch():
    """pooch logs every attempt; a failed offline run should print one line, ours."""
    import pooch

    pooch_logger = pooch.get_logger()
    level = pooch_logger.level
    pooch_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        pooch_logger.setLevel(level)


def _short_reason(exc: Exception) -> str:
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "no connection"
    if isinstance(exc, ValueError) and "hash" in str(exc).lower():
        return "sha256 mismatch"
    return type(exc).__name__


def download(dataset: str, remote: RemoteFile, mirrors: Sequence[str], *, hint: str = "") -> Path:
    """Fetch one file into ``cache_dir()/dataset``, trying each mirror in turn.

    Args:
        dataset: the dataset's name (the cache subfolder and the error message use it).
        remote: the file name (appended to each mirror's base URL) and its sha256.
        mirrors: base URLs ending in ``/``.
        hint: what to download by hand, for the error message.

    Returns:
        The path of the verified file in the cache.

    Raises:
        DownloadError: every mirror failed (offline, not found, or a sha256 mismatch); the
            one-line message names the file, each mirror's reason and ``--data-dir``.
    """
    import pooch
    import requests

    target = cache_dir() / dataset
    reasons = []
    with _quiet_pooch():
        for base in mirrors:
            url = base + remote.name
            try:
                path = pooch.retrieve(
                    url, known_hash=f"sha256:{remote.sha256}", fname=remote.name, path=target,
                    downloader=pooch.HTTPDownloader(timeout=DOWNLOAD_TIMEOUT_S),
                )
            except (ValueError, OSError, requests.RequestException) as exc:
                reasons.append(f"{urlsplit(url).netloc}: {_short_reason(exc)}")
                continue
            logger.info("%s: %s verified in %s", dataset, remote.name, target)
            return Path(path)
    raise DownloadError(
        f"download of {dataset} file {remote.name} failed ({'; '.join(reasons)}); "
        f"{hint + ' and ' if hint else 'download the files yourself and '}"
        "pass their folder with --data-dir (data_dir= in Python)"
    )


def find_local(dataset: str, data_dir: str | PathLike, name: str, source: str) -> Path:
    """``data_dir/name``, or the same name without ``.gz`` (an unpacked copy).

    Raises:
        FileNotFoundError: naming the folder, the file and where to get it.
    """
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"--data-dir {folder} is not a folder (dataset {dataset})")
    candidates = [folder / name]
    if name.endswith(".gz"):
        candidates.append(folder / name[: -len(".gz")])
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{dataset}: {' or '.join(c.name for c in candidates)} not found in {folder}; "
        f"get it from {source}"
    )
