"""``fleetplane simulate``: check a placement under traffic, network variability and faults.

Exit codes: 0 when the simulation ran (SLO misses are results, not
failures), 1 for invalid input, 2 when some request-serving workloads could
not be simulated because the placement leaves them unplaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from fleetplane.cli.columns import render_columns
from fleetplane.cli.main import app
from fleetplane.cli.output import (
    OUTPUT_OPTION,
    OutputFormat,
    dump_json,
    emit_document,
    stderr,
    user_errors,
    write_document,
)
from fleetplane.errors import (
    IncompleteResult,
    Problem,
    SourcePosition,
    ValidationError,
    did_you_mean,
)
from fleetplane.model.fleet import Fleet
from fleetplane.model.loader import LoadResult, read_fleet
from fleetplane.model.placement import Placement
from fleetplane.model.scenario import Scenario
from fleetplane.model.units import format_duration

if TYPE_CHECKING:
    # The simulator pulls in numba and scipy.stats (seconds of start-up); the
    # command imports it when it runs, so `fleetplane --help` stays fast.
    from fleetplane.sim.checks import Locate

_MAX_ROWS = 15


FLEET_ARGUMENT = typer.Argument(..., help="The fleet's manifests (a directory or a file).")
SCENARIO_OPTION = typer.Option(
    None,
    "--scenario",
    help="Scenario file, or the name of a Scenario in the fleet "
    "(default: the fleet's only Scenario).",
)
PLACEMENT_OPTION = typer.Option(
    None, "--placement", help="Placement file or name (default: plan now with the fleet's policy)."
)
JSON_OPTION = typer.Option(None, "--json", help="Also write the full result as JSON to this file.")
REPORT_OPTION = typer.Option(
    None, "--report", help="Write a self-contained HTML report with plots to this file."
)
SEED_OPTION = typer.Option(None, "--seed", help="Override the scenario's seed.")
SWEEP_OPTION = typer.Option(
    None,
    "--sweep",
    help="Run once per value, e.g. demand=0.5,1,1.5,2 (multiplies demandScale); "
    "prints SLO attainment and cost per 1,000 requests for each.",
)
OUT_OPTION = typer.Option(
    None, "--out", help="Write the result document to this file (JSON if it ends in .json)."
)

RESULT_COLUMNS = [
    "WORKLOAD", "REQUESTS", "P50", "P95", "P99", "P99.9", "SLO P99", "ATTAINMENT",
    "TIMEOUTS", "DROPPED", "THROUGHPUT", "$/1K REQ", "PREDICTED P99", "DIFF",
]  # fmt: skip
SWEEP_COLUMNS = [
    "WORKLOAD", "REQUESTS", "SLO ATTAINMENT", "SLO MET", "P99", "TIMEOUTS", "$/1K REQ",
]  # fmt: skip


@app.command()
@user_errors
def simulate(
    fleet_dir: Path = FLEET_ARGUMENT,
    scenario: str | None = SCENARIO_OPTION,
    placement: str | None = PLACEMENT_OPTION,
    json_file: Path | None = JSON_OPTION,
    report: Path | None = REPORT_OPTION,
    seed: int | None = SEED_OPTION,
    sweep: str | None = SWEEP_OPTION,
    output: OutputFormat = OUTPUT_OPTION,
    out: Path | None = OUT_OPTION,
) -> None:
    """Simulate requests over a placement and compare with its predictions.

    Reports per workload p50/p95/p99/p99.9, throughput, SLO attainment,
    timeouts, cost per 1,000 requests and egress; per site utilisation; a
    per-minute time series; and predicted vs simulated p99 (flagged when
    more than 20% apart).
    """
    from fleetplane import sim

    sweep_spec = _parse_sweep(sweep) if sweep else None
    loaded, chosen, base_dir = _load(fleet_dir, scenario, placement)
    fleet = loaded.fleet
    plan = _placement(fleet, placement, loaded.sources.locate)
    with _progress() as advance:
        if sweep_spec is None:
            result = sim.simulate(
                fleet, plan, chosen, seed=seed, base_dir=base_dir,
                locate=loaded.sources.locate, progress=advance,
            )  # fmt: skip
            document = result.to_document()
        else:
            parameter, values = sweep_spec
            results = sim.sweep(
                fleet, plan, chosen, parameter, values, seed=seed, base_dir=base_dir,
                locate=loaded.sources.locate, progress=advance,
            )  # fmt: skip
            document = _sweep_document(parameter, values, results)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(dump_json(document), encoding="utf-8")
    if out is not None:
        write_document(document, out)
    if report is not None:
        from fleetplane.sim.report import render_report, render_sweep_report

        page = (
            render_report(result)
            if sweep_spec is None
            else render_sweep_report(sweep_spec[0], sweep_spec[1], results)
        )
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(page, encoding="utf-8")
    if output is not OutputFormat.table:
        emit_document(document, output)
    elif sweep_spec is None:
        _print_result(result)
    else:
        _print_sweep(sweep_spec[0], sweep_spec[1], results)
    skipped = result.skipped if sweep_spec is None else results[0].skipped
    warnings = result.warnings if sweep_spec is None else results[0].warnings
    for warning in warnings:
        stderr.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False)
    if skipped:
        names = ", ".join(f"{k} ({v})" for k, v in skipped.items())
        raise IncompleteResult(f"not simulated, because the placement leaves them out: {names}")


# ------------------------------------------------------------------ inputs


def _parse_sweep(text: str) -> tuple[str, list[float]]:
    from fleetplane.sim import SWEEPABLE

    name, _, values = text.partition("=")
    name = name.strip()
    if name not in SWEEPABLE:
        hint = did_you_mean(name, list(SWEEPABLE)) or f"sweepable: {', '.join(SWEEPABLE)}"
        raise ValidationError(Problem(f"--sweep: cannot sweep {name!r}", hint=hint))
    try:
        numbers = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        numbers = []
    if not numbers or any(v <= 0 for v in numbers):
        raise ValidationError(
            Problem(
                f"--sweep: {text!r} needs positive numbers after '='",
                hint="write it like --sweep demand=0.5,1,1.5,2",
            )
        )
    return name, numbers


def _load(
    fleet_dir: Path, scenario: str | None, placement: str | None
) -> tuple[LoadResult, Scenario, Path]:
    """The fleet with the scenario (and placement) files, all checked together."""
    extra = [Path(p) for p in (scenario, placement) if p is not None and Path(p).is_file()]
    loaded = read_fleet(fleet_dir, *extra)
    loaded.raise_for_problems()
    fleet = loaded.fleet
    if scenario is not None and Path(scenario).is_file():
        names = list(read_fleet(Path(scenario), references=False).fleet.scenarios)
        if len(names) != 1:
            raise ValidationError(
                Problem(
                    f"{scenario} holds {len(names)} Scenarios; expected exactly one",
                    SourcePosition(scenario),
                    hint="put each scenario in its own file, or pass --scenario NAME",
                )
            )
        chosen = fleet.scenarios[names[0]]
    else:
        chosen = _by_name(fleet.scenarios, scenario, "Scenario", "--scenario FILE")
    where = loaded.sources.locate("Scenario", chosen.name, ())
    base_dir = Path(where.file).parent if where is not None else Path(".")
    return loaded, chosen, base_dir


def _by_name(found: dict[str, Any], name: str | None, kind: str, flag: str) -> Any:
    if name is None:
        if len(found) == 1:
            return next(iter(found.values()))
        listed = ", ".join(found) if found else "none in the fleet"
        raise ValidationError(
            Problem(f"which {kind}? found: {listed}", hint=f"pass {flag} or a name")
        )
    if name not in found:
        hint = (
            did_you_mean(name, list(found)) or f"{kind}s in the fleet: {', '.join(found) or 'none'}"
        )
        raise ValidationError(Problem(f"no {kind} file or {kind} named {name!r}", hint=hint))
    return found[name]


def _placement(fleet: Fleet, placement: str | None, locate: Locate) -> Placement:
    if placement is None:
        from fleetplane.placement import plan

        # Unplaceable workloads are reported by the simulation (exit code 2).
        return plan(fleet, locate=locate).placement
    if Path(placement).is_file():
        names = list(read_fleet(Path(placement), references=False).fleet.placements)
        if len(names) != 1:
            raise ValidationError(
                Problem(
                    f"{placement} holds {len(names)} Placements; expected exactly one",
                    SourcePosition(placement),
                )
            )
        placement = names[0]
    chosen: Placement = _by_name(fleet.placements, placement, "Placement", "--placement FILE")
    return chosen


@contextmanager
def _progress() -> Iterator[Callable[[float, float], None]]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    ) as bar:
        task = bar.add_task("simulate", total=1.0)

        def advance(done: float, total: float) -> None:
            bar.update(task, completed=done / total if total else 1.0)

        yield advance


# ------------------------------------------------------------------ output


def _ms(value: float | None) -> str:
    return "-" if value is None else format_duration(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _print_result(result: Any) -> None:
    run = result.run
    typer.echo(
        f"scenario {result.scenario} over placement {result.placement}: "
        f"{run.simulated_requests:,} requests simulated in {run.wall_seconds:.2f}s "
        f"({run.requests_per_second:,.0f}/s), routing {result.routing}, seed {result.seed}, "
        f"{run.replications} replication(s)"
    )
    typer.echo()
    typer.echo(
        render_columns(RESULT_COLUMNS, [_workload_row(w) for w in result.workloads]), nl=False
    )
    flagged = [w.workload for w in result.workloads if w.comparison.flagged]
    if flagged:
        typer.echo(f"! predicted and simulated p99 more than 20% apart: {', '.join(flagged)}")
    sites = sorted(result.sites, key=lambda s: -s.utilisation)[:_MAX_ROWS]
    typer.echo()
    site_rows = [[s.site, str(s.servers), f"{s.requests:,}", _pct(s.utilisation)] for s in sites]
    typer.echo(render_columns(["SITE", "SERVERS", "REQUESTS", "UTILISATION"], site_rows), nl=False)
    if len(result.sites) > len(sites):
        typer.echo(f"({len(result.sites) - len(sites)} more sites; see --json or --report)")
    links = sorted(result.links, key=lambda x: -(x.bytes_a_to_b + x.bytes_b_to_a))[:_MAX_ROWS]
    if links:
        typer.echo()
        link_rows = [
            [x.link, f"{x.bytes_a_to_b / 1e9:.3f}", f"{x.bytes_b_to_a / 1e9:.3f}",
             _money(x.egress_cost)]
            for x in links
        ]  # fmt: skip
        header = ["LINK", "A->B GB", "B->A GB", "EGRESS $ (SCENARIO)"]
        typer.echo(render_columns(header, link_rows), nl=False)
    worst = max((r.relative_error for r in result.littles_law), default=0.0)
    if worst > 0.02:
        stderr.print(f"[yellow]warning:[/] Little's law off by {100 * worst:.1f}% in a replication")


def _workload_row(w: Any) -> list[str]:
    c = w.comparison
    diff = "-" if c.relative_difference is None else f"{100 * c.relative_difference:.0f}%"
    return [
        w.workload, f"{w.outcomes.requests:,}", _ms(w.latency.p50), _ms(w.latency.p95),
        _ms(w.latency.p99), _ms(w.latency.p999), _ms(w.slo[-1].target) if w.slo else "-",
        _pct(w.slo_attainment), f"{w.timed_out:,}", f"{w.outcomes.dropped:,}",
        f"{w.throughput:,.1f}/s", _money(w.cost.per_1k_requests), _ms(c.predicted_p99),
        diff + (" !" if c.flagged else ""),
    ]  # fmt: skip


def _sweep_document(parameter: str, values: list[float], results: list[Any]) -> dict[str, Any]:
    return {
        "parameter": parameter,
        "points": [
            {"value": value, "result": result.to_document()}
            for value, result in zip(values, results, strict=True)
        ],
    }


def _print_sweep(parameter: str, values: list[float], results: list[Any]) -> None:
    rows = [
        [f"{value:g}", w.workload, f"{w.outcomes.requests:,}", _pct(w.slo_attainment),
         "yes" if w.slo_met else "no", _ms(w.latency.p99), f"{w.timed_out:,}",
         _money(w.cost.per_1k_requests)]
        for value, result in zip(values, results, strict=True)
        for w in result.workloads
    ]  # fmt: skip
    typer.echo(render_columns([parameter.upper(), *SWEEP_COLUMNS], rows), nl=False)
