"""``fleetplane plan``: decide where every workload runs and print the plan.

Exit codes follow DESIGN.md: 0 when every workload is placed, 2 when some
are unplaceable (the plan and the reasons are still printed), 1 on invalid
input (errors on stderr, nothing on stdout).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetplane.cli.long_table import print_table
from fleetplane.cli.main import app
from fleetplane.cli.output import (
    OUTPUT_OPTION,
    OutputFormat,
    emit_document,
    stderr,
    stdout,
    user_errors,
    write_document,
)
from fleetplane.errors import Problem, SourcePosition, ValidationError
from fleetplane.gc_pause import gc_paused
from fleetplane.model.loader import LoadResult, read_fleet
from fleetplane.model.placement import Placement, WorkloadPlacement
from fleetplane.model.policy import PlacementPolicy
from fleetplane.model.units import format_duration

# Width of the table when stdout is a pipe or file: wide enough not to fold rows.
PIPE_WIDTH = 200
# Below this many workloads a plan takes well under a second: no progress bar.
PROGRESS_THRESHOLD = 500
# The progress bar is redrawn at most this often.
_REDRAW_SECONDS = 0.1


@app.command()
@user_errors
def plan(
    paths: list[Path] = typer.Argument(  # noqa: B008 (typer declares arguments this way)
        ..., help="Fleet manifests: files or directories (read recursively)."
    ),
    policy: Path | None = typer.Option(  # noqa: B008
        None, "--policy", help="A PlacementPolicy file to use instead of the fleet's own."
    ),
    solver: str = typer.Option("greedy", "--solver", help="Solver: greedy, exact or auto."),
    time_limit: float = typer.Option(30.0, "--time-limit", help="Seconds for the exact solver."),
    current: Path | None = typer.Option(  # noqa: B008
        None, "--current", help="Re-plan from this Placement (moves cost the policy's moveCost)."
    ),
    explain: str | None = typer.Option(None, "--explain", help="Explain one workload's placement."),
    without_site: list[str] = typer.Option(  # noqa: B008
        [], "--without-site", help="What-if: plan without this site (repeatable)."
    ),
    scale_demand: float = typer.Option(1.0, "--scale-demand", help="What-if: demand × F."),
    price: list[str] = typer.Option(  # noqa: B008
        [], "--price", help="What-if: SITE=FACTOR scales a site's prices (repeatable)."
    ),
    compare_baselines: bool = typer.Option(
        False, "--compare-baselines", help="Also plan cloud-only, edge-ward and nearest."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for breaking exact ties."),
    output: OutputFormat = OUTPUT_OPTION,
    out: Path | None = typer.Option(  # noqa: B008
        None, "--out", help="Write the Placement to this file (YAML, or JSON for *.json)."
    ),
) -> None:
    """Place every workload at the lowest cost that meets its SLOs and the fleet's limits.

    Exit 0 when all workloads are placed, 2 when some cannot be (reasons are
    printed), 1 on invalid input.
    """
    from fleetplane.placement import plan as make_plan

    loaded = _load(read_fleet(*paths))
    chosen, policy_sources = _policy(policy)
    sources = policy_sources if policy_sources is not None else loaded
    with _progress(len(loaded.fleet.workloads)) as report:
        result = make_plan(
            loaded.fleet,
            chosen,
            solver=solver,
            seed=seed,
            locate=sources.sources.locate,
            progress=report,
            time_limit=time_limit,
            current=_current(current),
        )
    placement = result.placement
    document = None  # made once for both --out and -o json|yaml
    if out is not None:
        document = _document(placement)
        write_document(document, out)
    if explain or without_site or scale_demand != 1.0 or price or compare_baselines:
        _extras(
            loaded,
            chosen,
            result,
            Extras(explain, without_site, scale_demand, price, compare_baselines),
            solver,
            seed,
            time_limit,
            output,
        )
        return
    if output is OutputFormat.table:
        _print_table(placement)
    else:
        emit_document(document if document is not None else _document(placement), output)
    if placement.spec.unplaceable:
        raise typer.Exit(2)


def _document(placement: Placement) -> dict[str, Any]:
    # A big plan's document is a million dicts and lists, all kept, no cycles: the collector's
    # full passes over them (and over the fleet and the plan) took most of the time.
    with gc_paused():
        return placement.to_document()


def _current(path: Path | None) -> Placement | None:
    if path is None:
        return None
    # Names in the Placement refer to the fleet planned now, not to this file:
    # what no longer exists is a forced move in re-planning, not an input error.
    loaded = _load(read_fleet(path, references=False))
    found = list(loaded.fleet.placements.values())
    if len(found) != 1:
        raise ValidationError(
            Problem(
                f"expected exactly one Placement, found {len(found)}",
                SourcePosition(str(path)),
                hint="give the file written by `fleetplane plan --out`",
            )
        )
    return found[0]


@dataclass(frozen=True)
class Extras:
    """The options that print a report instead of the plan."""

    explain: str | None
    without_site: list[str]
    scale_demand: float
    price: list[str]
    compare_baselines: bool


def _prices(items: list[str]) -> dict[str, float]:
    prices: dict[str, float] = {}
    for item in items:
        site, _, factor = item.partition("=")
        try:
            prices[site] = float(factor)
        except ValueError:
            raise ValidationError(f"--price {item}: write SITE=FACTOR, e.g. store-17=0.8") from None
    return prices


def _extras(
    loaded: LoadResult,
    policy: PlacementPolicy | None,
    result: object,
    extras: Extras,
    solver: str,
    seed: int,
    time_limit: float,
    output: OutputFormat,
) -> None:
    """--explain, what-if and --compare-baselines: reports instead of the plan table.

    Every report is computed before anything is printed, so an invalid option
    (an unknown site or workload) leaves stdout empty.
    """
    from fleetplane.cli import plan_report
    from fleetplane.placement import PlanResult
    from fleetplane.placement._internal.counterfactual import Planner
    from fleetplane.placement._internal.whatif import WhatIf, apply

    assert isinstance(result, PlanResult)
    fleet = loaded.fleet
    docs: dict[str, plan_report.Doc] = {}
    change = WhatIf(tuple(extras.without_site), extras.scale_demand, _prices(extras.price))
    apply(fleet, change)  # validates site names and factors before any slow report
    if extras.explain:
        planner = Planner(policy, solver, seed, time_limit)
        docs["explain"] = plan_report.explain_report(fleet, policy, result, extras.explain, planner)
    if not change.empty:
        docs["whatIf"] = plan_report.whatif_report(
            fleet, policy, result, change, solver, seed, time_limit
        )
    if extras.compare_baselines:
        docs["baselines"] = plan_report.baselines_report(fleet, policy, result)
    if output is not OutputFormat.table:
        emit_document(docs, output)
        return
    console = _console()
    printers = {
        "explain": plan_report.print_explain,
        "whatIf": plan_report.print_whatif,
        "baselines": plan_report.print_baselines,
    }
    for key in ("explain", "whatIf", "baselines"):
        if key in docs:
            printers[key](console, docs[key])


def _load(result: LoadResult) -> LoadResult:
    result.raise_for_problems()
    return result


def _policy(path: Path | None) -> tuple[PlacementPolicy | None, LoadResult | None]:
    if path is None:
        return None, None
    loaded = _load(read_fleet(path))
    others = [r for r in loaded.fleet.resources() if r.kind != "PlacementPolicy"]
    policies = list(loaded.fleet.policies.values())
    if len(policies) != 1 or others:
        raise ValidationError(
            Problem(
                f"expected exactly one PlacementPolicy, found {len(policies)} "
                f"and {len(others)} other resource(s)",
                SourcePosition(str(path)),
                hint="put the policy alone in the file given to --policy",
            )
        )
    return policies[0], loaded


@contextmanager
def _progress(workloads: int) -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress bar on stderr for fleets big enough to wait for."""
    if workloads < PROGRESS_THRESHOLD:
        yield None
        return
    # Redrawn from report() rather than by rich's refresh thread: with a thread running, the
    # plan would not fork its feasibility helper (placement/_internal/feasibility_fork.py).
    bar = Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        auto_refresh=False,
    )
    tasks: dict[str, TaskID] = {}
    drawn = 0.0

    def report(stage: str, done: int, total: int) -> None:
        nonlocal drawn
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)
        now = time.monotonic()
        if now - drawn >= _REDRAW_SECONDS or done == total:
            drawn = now
            bar.refresh()

    with bar:
        yield report


def _where(item: WorkloadPlacement) -> str:
    parts = [f"{a.site}/{a.pool} ×{a.replicas}" for a in item.assignments]
    if len(parts) <= 2:
        return ", ".join(parts)
    sites = len({a.site for a in item.assignments})
    replicas = sum(a.replicas for a in item.assignments)
    return f"{sites} sites, {replicas} replicas"


def _duration(seconds: float) -> str:
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f}ms"
    return format_duration(float(f"{seconds:.3g}"))


def _latency(item: WorkloadPlacement) -> str:
    if item.predicted.p99 is not None and item.slo_p99 is not None:
        return f"{_duration(item.predicted.p99)} / {_duration(item.slo_p99)}"
    if item.predicted.p99 is not None:
        return _duration(item.predicted.p99)
    if item.completion_time is not None:
        return f"runs {_duration(item.completion_time)}"
    return "-"


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if value >= 1.0 or value == 0 else f"{value:.3g}"


def _console() -> Console:
    """The terminal's console, or a wide one for pipes and files so rows are not folded."""
    if stdout.is_terminal:
        return stdout
    return Console(file=sys.stdout, width=PIPE_WIDTH, soft_wrap=True)


def _print_table(placement: Placement) -> None:
    spec = placement.spec
    console = _console()
    table = Table(title=f"Placement of {spec.fleet} ({spec.solver.name}, policy {spec.policy})")
    table.add_column("workload", no_wrap=True)
    table.add_column("class", no_wrap=True)
    table.add_column("p99 / SLO", justify="right", no_wrap=True)
    table.add_column("$/month", justify="right", no_wrap=True)
    table.add_column("$/1k req", justify="right", no_wrap=True)
    table.add_column("sites × replicas", overflow="fold", min_width=24)
    for item in spec.workloads:
        table.add_row(
            item.workload,
            item.workload_class,
            _latency(item),
            _money(item.cost.total),
            _money(item.cost_per_1k_requests),
            _where(item),
        )
    table.add_section()
    table.add_row(
        "total",
        f"{len(spec.workloads)} placed",
        "",
        _money(spec.cost.total),
        "",
        f"{len(spec.unplaceable)} unplaceable",
    )
    print_table(console, table)
    if spec.changes:
        from fleetplane.cli.plan_report import changes_table

        changes_table(console, "Changes against the current plan", spec.changes)
    solver_info = spec.solver
    if solver_info.optimality_gap is not None:
        console.print(
            f"solver {solver_info.name}: {solver_info.status}, "
            f"gap {solver_info.optimality_gap:.3%}",
            highlight=False,
        )
    cost = spec.cost
    console.print(
        f"per month: compute {cost.compute:,.2f}, egress {cost.egress:,.2f}, model distribution "
        f"{cost.model_distribution:,.2f}, energy {cost.energy:,.2f}",
        highlight=False,
    )
    for missing in spec.unplaceable:
        console.print(
            f"\n[bold red]unplaceable[/] {missing.workload}: {escape(missing.reason)}",
            highlight=False,
        )
        for r in missing.rejections:
            console.print(
                f"  {r.sites} site(s): {r.constraint} — e.g. {r.example}",
                highlight=False,
                markup=False,
            )
        if missing.closest_miss:
            console.print(f"  closest miss: {missing.closest_miss}", highlight=False, markup=False)
