"""A long table printed by ``long_table.print_table`` is exactly what rich prints, only sooner."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator

import pytest
from rich import box
from rich.console import Console
from rich.table import Table

from fleetplane.cli import long_table

# Rich draws the last row with the box's foot characters; no built-in box has different ones.
FOOTED = box.Box("┏━┳┓\n┃ ┃┃\n┡━╇┩\n│ ││\n├─┼┤\n├─┼┤\n╎ ╎╎\n└─┴┘\n")
ROWS = 30


@pytest.fixture(autouse=True)
def _short_tables_count_as_long(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rendering hundreds of rows with rich for every console setting takes seconds.
    monkeypatch.setattr(long_table, "MIN_ROWS", ROWS - 5)


def _table(rows: int, frame: box.Box = box.HEAVY_HEAD, cell: str = "hub/general ×{n}") -> Table:
    table = Table(title="Placement of fleet (greedy, policy default)", box=frame)
    table.add_column("workload", no_wrap=True)
    table.add_column("class", no_wrap=True)
    table.add_column("p99 / SLO", justify="right", no_wrap=True)
    table.add_column("$/month", justify="right", no_wrap=True)
    table.add_column("sites × replicas", overflow="fold", min_width=24)
    draw = random.Random(rows)
    for n in range(rows):
        table.add_row(
            f"svc-{n:05d}" + "x" * draw.randint(0, 6),
            draw.choice(["batch", "inference", "control"]),
            f"{draw.random() * 100:.1f}ms / 50ms",
            f"{draw.random() * 1e5:,.2f}",
            cell.format(n=draw.randint(1, 9)),
        )
        if n == rows // 2:
            table.add_section()
    table.add_section()
    table.add_row("total", f"{rows} placed", "", "1.00", "0 unplaceable")
    return table


def _consoles() -> Iterator[dict[str, object]]:
    for terminal in (False, True):
        for soft_wrap in (False, True):
            for width in (220, 120, 60):
                yield {"force_terminal": terminal, "soft_wrap": soft_wrap, "width": width}


def _printed(settings: dict[str, object], print_it: object, table: Table) -> str:
    out = io.StringIO()
    console = Console(file=out, legacy_windows=False, **settings)  # type: ignore[arg-type]
    print_it(console, table)  # type: ignore[operator]
    return out.getvalue()


@pytest.fixture
def rendered_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Row counts of the tables rich itself renders (the probe has one row)."""
    seen: list[int] = []
    original = Table.__rich_console__

    def spy(self: Table, console: Console, options: object):  # type: ignore[no-untyped-def]
        seen.append(self.row_count)
        return original(self, console, options)  # type: ignore[arg-type]

    monkeypatch.setattr(Table, "__rich_console__", spy)
    return seen


@pytest.mark.parametrize("frame", [box.HEAVY_HEAD, box.ROUNDED, box.SIMPLE, FOOTED])
@pytest.mark.parametrize("settings", list(_consoles()), ids=str)
def test_the_output_is_exactly_richs(frame: box.Box, settings: dict[str, object]) -> None:
    rows = ROWS
    expected = _printed(settings, lambda console, table: console.print(table), _table(rows, frame))
    assert _printed(settings, long_table.print_table, _table(rows, frame)) == expected


def test_a_long_simple_table_has_only_its_probe_laid_out_by_rich(rendered_rows: list[int]) -> None:
    _printed({"width": 220}, long_table.print_table, _table(ROWS))
    assert rendered_rows == [1]


@pytest.mark.parametrize(
    "table",
    [
        _table(ROWS - 10),  # short: rich is quick enough
        _table(ROWS, cell="[bold]hub[/]/general ×{n}"),  # markup
        _table(ROWS, cell=":thumbs_up: ×{n}"),  # an emoji code
    ],
    ids=["short", "markup", "emoji"],
)
def test_other_tables_are_printed_by_rich(table: Table, rendered_rows: list[int]) -> None:
    settings = {"width": 220, "force_terminal": True}
    expected = _printed(settings, lambda console, t: console.print(t), table)
    rendered_rows.clear()
    assert _printed(settings, long_table.print_table, table) == expected
    assert rendered_rows == [table.row_count]
