"""Plain aligned columns, like kubectl: never truncated, whatever the terminal width.

Rich tables shrink columns to fit the console (80 columns in a pipe), which
cuts names in half; scripts and people both want the whole value.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def render_columns(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines) + "\n"


def print_columns(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    sys.stdout.write(render_columns(headers, rows))
    sys.stdout.flush()
