"""`fleetplane plan`'s progress bar: drawn from the plan's own reports, without a thread.

A plan forks a helper for feasibility only while no other thread runs
(placement/_internal/feasibility_fork.py), and rich redraws a bar from a
thread of its own unless told not to.
"""

from __future__ import annotations

import io
import threading

import pytest
from rich.console import Console

from fleetplane.cli import plan as plan_cli
from fleetplane.placement._internal import feasibility_fork


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    monkeypatch.setattr(plan_cli, "stderr", console)
    return out


def test_the_bar_runs_no_thread_so_the_plan_may_fork(terminal: io.StringIO) -> None:
    threads = threading.active_count()
    with plan_cli._progress(plan_cli.PROGRESS_THRESHOLD) as report:
        assert report is not None
        assert threading.active_count() == threads
        if threads == 1:
            assert feasibility_fork.helper_allowed()
        report("feasibility", 10, 100)
        report("feasibility", 100, 100)
    assert "feasibility" in terminal.getvalue()
    assert "100/100" in terminal.getvalue()


def test_the_bar_is_redrawn_at_most_every_tenth_of_a_second(
    terminal: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(plan_cli.time, "monotonic", lambda: now[0])
    with plan_cli._progress(plan_cli.PROGRESS_THRESHOLD) as report:
        assert report is not None
        report("solve", 1, 1000)
        drawn = terminal.getvalue()
        report("solve", 2, 1000)  # too soon: not drawn
        assert terminal.getvalue() == drawn
        now[0] += 0.1
        report("solve", 3, 1000)
        assert "3/1000" in terminal.getvalue()
        report("solve", 1000, 1000)  # the end of a stage is always drawn
        assert "1000/1000" in terminal.getvalue()


def test_small_fleets_get_no_bar() -> None:
    with plan_cli._progress(plan_cli.PROGRESS_THRESHOLD - 1) as report:
        assert report is None
