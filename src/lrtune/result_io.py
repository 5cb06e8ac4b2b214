"""JSON and figure saving shared by the result dataclasses (range test, sweep)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


def json_clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null (recursively through lists and dicts).

    Examples:
        >>> json_clean({"a": [1.0, float("nan")], "b": (float("inf"),)})
        {'a': [1.0, None], 'b': [None]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [json_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: json_clean(v) for k, v in value.items()}
    return value


def write_json(data: Any, path: str | Path) -> Path:
    """Write ``data`` as indented JSON, atomically: a failure midway (a full disk, Ctrl-C)
    leaves the previous file as it was, never a truncated one."""
    from lrtune.training.checkpoint_io import atomic_write_text

    return atomic_write_text(json.dumps(data, indent=2) + "\n", path)


class JsonResult:
    """Mixin for a dataclass result: ``to_json``/``from_json`` and ``save`` (PNG + JSON).

    Subclasses set ``KIND`` (named in error messages) and define ``plot()``.
    """

    KIND = "result"
    EXTRA_KEYS: tuple[str, ...] = ()  # written beside the fields by others, skipped on reading

    def to_dict(self) -> dict[str, Any]:
        return json_clean({"format_version": FORMAT_VERSION, **asdict(self)})  # type: ignore[call-overload]

    def to_json(self, path: str | Path | None = None) -> str:
        """Return the result as JSON text; also write it to ``path`` when given."""
        data = self.to_dict()
        if path is not None:
            write_json(data, path)
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, source: str | Path):
        """Read a result from JSON text or from a file path."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            text = Path(source).read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a {cls.KIND} (invalid JSON: {exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"not a {cls.KIND} (a JSON object is expected)")
        for key in ("format_version", *cls.EXTRA_KEYS):
            data.pop(key, None)
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"not a {cls.KIND} ({exc})") from None

    def save(self, out_dir: str | Path, stem: str) -> tuple[Path, Path]:
        """Write ``stem.png`` (300 dpi) and ``stem.json`` into ``out_dir``; return both paths."""
        from lrtune.plots import save_figure

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        png, js = out / f"{stem}.png", out / f"{stem}.json"
        save_figure(self.plot(), png)  # type: ignore[attr-defined]
        self.to_json(js)
        return png, js
