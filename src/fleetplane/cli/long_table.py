"""Print a long rich Table quickly, exactly as rich prints it.

Rich renders every cell through its whole layout machinery: about 0.6 ms a
row, so ``fleetplane plan`` spent 14 s printing the 20,000 rows of a large
fleet's plan. When the table is simple — plain one-line text cells, no
styles on rows, cells or borders, and every column at its natural width —
each body row is just its cells padded between the box's vertical bars. So
rich lays out and renders a *probe* table (the same title, columns and
header, and one row holding the widest cell of every column: the widths it
picks are those of the full table), and the body rows are formatted here at
the widths it drew. Anything else is printed by rich itself.
"""

from __future__ import annotations

import copy
import dataclasses

from rich import box as boxes
from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment, Segments
from rich.table import Table
from rich.text import Text

# Below this many rows rich's own rendering is quick enough.
MIN_ROWS = 200


def print_table(console: Console, table: Table) -> None:
    """``console.print(table)``, without rich's per-cell cost for a long simple table."""
    rows = _plain_rows(table)
    if rows is None or len(rows) < MIN_ROWS:
        console.print(table)
        return
    lines = _rendered(console, _probe(table, rows))
    assert table.box is not None  # _plain_rows: only tables with a box
    box = table.box.substitute(
        console.options, safe=table.safe_box if table.safe_box is not None else console.safe_box
    )
    widths = _widths(lines[-1], box)
    if widths is None or not _fits(rows, widths):
        console.print(table)
        return
    head = [segment for line in lines[:-2] for segment in (*line, Segment.line())]
    console.print(Segments(head), soft_wrap=True)
    body = "\n".join([*_body_lines(table, rows, widths, box), box.get_bottom(widths)])
    console.print(Text(body), soft_wrap=True, highlight=False, markup=False, emoji=False)


def _rendered(console: Console, table: Table) -> list[list[Segment]]:
    """The lines ``console.print(table)`` would write (its options, its cropping)."""
    if console.soft_wrap:
        options = console.options.update(no_wrap=True, overflow="ignore")
        return list(Segment.split_lines(console.render(table, options)))
    segments = console.render(table, console.options)
    return list(
        Segment.split_and_crop_lines(segments, console.width, pad=False, include_new_lines=False)
    )


def _plain_rows(table: Table) -> list[list[str]] | None:
    """The cells as strings, or None if rich may draw them other than as plain text."""
    simple = (
        table.box is not None
        and table.show_edge
        and table.show_header
        and not table.show_footer
        and not table.show_lines
        and not table.leading
        and not table.expand
        and table.width is None
        and table.caption is None
        and not table.row_styles
        and table.style in (None, "", "none")
        and not table.border_style
        and table.padding == (0, 1, 0, 1)
        and table.pad_edge
        and not table.collapse_padding
        and all(row.style is None for row in table.rows)
        and all(not c.style and not c.highlight for c in table.columns)
        and all(c.justify in ("left", "right") for c in table.columns)
    )
    if not simple:
        return None
    rows: list[list[str]] = [[] for _ in range(table.row_count)]
    for column in table.columns:
        for row, cell in zip(rows, column.cells, strict=True):
            # Markup ([bold]) and emoji codes (:smile:) would be interpreted by rich.
            if not isinstance(cell, str) or any(ch in cell for ch in "[:\n\r\t\x1b"):
                return None
            row.append(cell)
    return rows


def _probe(table: Table, rows: list[list[str]]) -> Table:
    """The table with one row: the widest cell of each column (same widths when nothing shrinks)."""
    probe = copy.copy(table)
    probe.columns = []
    for column in table.columns:
        probe.columns.append(dataclasses.replace(column, _cells=[]))
    probe.rows = []
    probe.add_row(*(max(cells, key=cell_len) for cells in zip(*rows, strict=True)))
    return probe


def _widths(bottom: list[Segment], box: boxes.Box) -> list[int] | None:
    """Column widths read off the probe's bottom border; None if it is not one."""
    text = "".join(segment.text for segment in bottom)
    if not (text.startswith(box.bottom_left) and text.endswith(box.bottom_right)):
        return None
    widths = [len(part) for part in text[1:-1].split(box.bottom_divider)]
    return widths if box.get_bottom(widths) == text else None


def _fits(rows: list[list[str]], widths: list[int]) -> bool:
    return all(
        max(cell_len(cell) for cell in cells) <= width - 2
        for cells, width in zip(zip(*rows, strict=True), widths, strict=True)
    )


def _body_lines(
    table: Table, rows: list[list[str]], widths: list[int], box: boxes.Box
) -> list[str]:
    right = [c.justify == "right" for c in table.columns]
    last = len(rows) - 1
    lines = []
    for n, row in enumerate(rows):
        # Rich draws the last row's edges with the box's foot characters.
        left_edge, right_edge, divider = (
            (box.foot_left, box.foot_right, box.foot_vertical)
            if n == last
            else (box.mid_left, box.mid_right, box.mid_vertical)
        )
        cells = []
        for cell, width, is_right in zip(row, widths, right, strict=True):
            pad = " " * (width - 2 - cell_len(cell))
            cells.append(f" {pad}{cell} " if is_right else f" {cell}{pad} ")
        lines.append(left_edge + divider.join(cells) + right_edge)
        if table.rows[n].end_section and n != last:
            lines.append(box.get_row(widths, "row", edge=True))
    return lines
