"""A small Markdown report: headings, paragraphs, tables and embedded figures."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def format_cell(value) -> str:
    """Numbers in a compact, table-friendly form; ``None`` as a dash.

    Examples:
        >>> [format_cell(v) for v in (None, 3, 0.012345, 123456.0, "x")]
        ['-', '3', '0.01235', '1.235e+05', 'x']
    """
    if value is None:
        return "-"
    if isinstance(value, int):  # bool included
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub-flavoured Markdown table.

    Examples:
        >>> print(markdown_table(["a", "b"], [[1, 0.5]]))
        | a | b |
        |---|---|
        | 1 | 0.5 |
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    """Collect Markdown blocks, then ``write(path)``; images are linked relative to the report."""

    def __init__(self, title: str) -> None:
        self.blocks: list[str] = [f"# {title}"]

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(f"{'#' * level} {text}")

    def paragraph(self, text: str) -> None:
        self.blocks.append(text)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence]) -> None:
        self.blocks.append(markdown_table(headers, rows))

    def image(self, path: str | Path, caption: str, *, relative_to: str | Path) -> None:
        rel = os.path.relpath(Path(path), Path(relative_to))
        self.blocks.append(f"![{caption}]({Path(rel).as_posix()})")

    def text(self) -> str:
        return "\n\n".join(self.blocks) + "\n"

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text())
        return path
