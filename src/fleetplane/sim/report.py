"""A self-contained HTML report of a simulation (figures as inline SVG, no external files).

Figures: latency CDF per workload with its SLO target, p99 over time with the
fault windows shaded, and site utilisation over time as a heatmap. Tables:
outcomes and percentiles, predicted vs simulated p99 (flagged beyond 20%),
busiest sites and links, Little's law per replication, warnings.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

from fleetplane.model.units import format_duration
from fleetplane.sim.result import FLAG_THRESHOLD, SimulationResult

#: Sites shown in the heatmap (the busiest ones).
HEATMAP_SITES = 40
#: Rows in the site and link tables.
TABLE_ROWS = 20

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
.flag { color: #b00020; font-weight: bold; } .ok { color: #1b7f3b; }
.muted { color: #666; font-size: 0.9em; }
figure { margin: 1em 0; } svg { max-width: 100%; height: auto; }
"""


def render_report(result: SimulationResult) -> str:
    """The report as one HTML document."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Simulation: {_e(result.scenario)} on {_e(result.fleet)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Simulation of scenario <code>{_e(result.scenario)}</code> over placement "
        f"<code>{_e(result.placement)}</code> ({_e(result.fleet)})</h1>",
        _summary(result),
        "<h2>Workloads</h2>",
        _workload_table(result),
        "<h2>Predicted vs simulated p99</h2>",
        _comparison_table(result),
        "<h2>Latency distribution</h2>",
        _figure(_cdf_figure(result)),
        "<h2>p99 over time</h2>",
        _figure(_p99_figure(result)),
        "<h2>Site utilisation</h2>",
        _figure(_heatmap_figure(result)),
        _site_table(result),
        "<h2>Egress by link</h2>",
        _link_table(result),
        "<h2>Checks</h2>",
        _checks(result),
        "</body></html>",
    ]
    return "\n".join(parts)


def render_sweep_report(
    parameter: str, values: Sequence[float], results: Sequence[SimulationResult]
) -> str:
    """A report of a sweep: SLO attainment and cost per 1,000 requests against the parameter."""
    rows = []
    for value, result in zip(values, results, strict=True):
        for w in result.workloads:
            rows.append(
                [
                    f"{value:g}",
                    _e(w.workload),
                    f"{w.outcomes.requests:,}",
                    _percent(w.slo_attainment),
                    _seconds(w.latency.p99),
                    f"{w.timed_out:,}",
                    _money(w.cost.per_1k_requests),
                ]
            )
    table = _table(
        [parameter, "workload", "requests", "SLO attainment", "p99", "timeouts", "cost / 1k"], rows
    )
    first = results[0]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>Sweep of {_e(parameter)}: {_e(first.scenario)}</title>",
            f"<style>{_STYLE}</style></head><body>",
            f"<h1>Sweep of <code>{_e(parameter)}</code>: scenario <code>{_e(first.scenario)}"
            f"</code> over placement <code>{_e(first.placement)}</code></h1>",
            _figure(_sweep_figure(parameter, values, results)),
            table,
            "</body></html>",
        ]
    )


def _e(text: object) -> str:
    return html.escape(str(text))


def _seconds(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else format_duration(value)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.4g}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary(result: SimulationResult) -> str:
    o = result.outcomes
    run = result.run
    items = [
        f"duration {format_duration(result.duration)} (warm-up {format_duration(result.warmup)})",
        f"routing <code>{_e(result.routing)}</code>, timeout {format_duration(result.timeout)}",
        f"demand × {result.demand_scale:g}, seed {result.seed}, {run.replications} replication(s)",
        f"{o.requests:,} requests counted: {o.ok:,} answered in time, "
        f"{o.late + o.lost + o.expired:,} timed out, {o.dropped:,} dropped",
        f"SLO attainment {_percent(result.slo_attainment)}",
        f"{run.simulated_requests:,} requests simulated in {run.wall_seconds:.2f} s "
        f"({run.requests_per_second:,.0f} per second)",
    ]
    faults = "".join(
        f"<li>{_e(f.type)} <code>{_e(f.target)}</code> from {format_duration(f.start)} "
        f"to {format_duration(f.end)}</li>"
        for f in result.faults
    )
    text = "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"
    if faults:
        text += f"<p>Faults:</p><ul>{faults}</ul>"
    if result.skipped:
        text += (
            "<p>Not simulated:</p><ul>"
            + "".join(f"<li><code>{_e(k)}</code>: {_e(v)}</li>" for k, v in result.skipped.items())
            + "</ul>"
        )
    return text


def _workload_table(result: SimulationResult) -> str:
    rows = []
    for w in result.workloads:
        target = w.slo[-1] if w.slo else None
        slo = f"p{target.quantile * 100:g} ≤ {format_duration(target.target)}" if target else "–"
        met = '<span class="ok">met</span>' if w.slo_met else '<span class="flag">missed</span>'
        rows.append(
            [
                f"<code>{_e(w.workload)}</code>",
                f"{w.outcomes.requests:,}",
                _seconds(w.latency.p50),
                _seconds(w.latency.p95),
                _seconds(w.latency.p99),
                _seconds(w.latency.p999),
                f"{slo} {met if w.slo else ''}",
                _percent(w.slo_attainment),
                f"{w.timed_out:,}",
                f"{w.outcomes.dropped:,}",
                f"{w.throughput:,.1f}/s",
                _money(w.cost.per_1k_requests),
            ]
        )
    header = [
        "workload", "requests", "p50", "p95", "p99", "p99.9", "SLO", "attainment",
        "timeouts", "dropped", "throughput", "cost / 1k req",
    ]  # fmt: skip
    return _table(header, rows)


def _comparison_table(result: SimulationResult) -> str:
    rows = []
    for w in result.workloads:
        c = w.comparison
        if c.relative_difference is None:
            verdict = "no prediction"
        elif c.flagged:
            verdict = f'<span class="flag">{100 * c.relative_difference:.0f}% apart</span>'
        else:
            verdict = f'<span class="ok">{100 * c.relative_difference:.0f}%</span>'
        rows.append(
            [
                f"<code>{_e(w.workload)}</code>",
                _seconds(c.predicted_p99),
                _seconds(c.simulated_p99),
                verdict,
            ]
        )
    note = (
        f'<p class="muted">Flagged when they differ by more than {FLAG_THRESHOLD:.0%} '
        "of the prediction.</p>"
    )
    return _table(["workload", "predicted p99", "simulated p99", "difference"], rows) + note


def _site_table(result: SimulationResult) -> str:
    sites = sorted(result.sites, key=lambda s: -s.utilisation)[:TABLE_ROWS]
    rows = [
        [f"<code>{_e(s.site)}</code>", str(s.servers), f"{s.requests:,}", _percent(s.utilisation)]
        for s in sites
    ]
    return _table(["site (busiest)", "servers", "requests", "utilisation"], rows)


def _link_table(result: SimulationResult) -> str:
    links = sorted(result.links, key=lambda link: -(link.bytes_a_to_b + link.bytes_b_to_a))[
        :TABLE_ROWS
    ]
    rows = [
        [
            f"<code>{_e(link.link)}</code>",
            f"{_e(link.a)} → {_e(link.b)}: {link.bytes_a_to_b / 1e9:,.3f} GB",
            f"{_e(link.b)} → {_e(link.a)}: {link.bytes_b_to_a / 1e9:,.3f} GB",
            _money(link.egress_cost),
        ]
        for link in links
    ]
    if not rows:
        return '<p class="muted">No request crossed a link.</p>'
    return _table(["link", "a → b", "b → a", "egress cost (scenario)"], rows)


def _checks(result: SimulationResult) -> str:
    little = [
        [
            str(i + 1),
            f"{run.in_system:.4g}",
            f"{run.arrival_rate * run.time_in_system:.4g}",
            f"{100 * run.relative_error:.3f}%",
        ]
        for i, run in enumerate(result.littles_law)
    ]
    text = "<p>Little's law, L (time average at the queues) against λW:</p>"
    text += _table(["replication", "L", "λW", "difference"], little)
    if result.warnings:
        text += (
            "<p>Warnings:</p><ul>" + "".join(f"<li>{_e(w)}</li>" for w in result.warnings) + "</ul>"
        )
    return text


# ---------------------------------------------------------------- figures


def _figure(svg: str) -> str:
    return f"<figure>{svg}</figure>"


def _new_figure(width: float = 9.0, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _cdf_figure(result: SimulationResult) -> str:
    figure = _new_figure()
    axes = figure.add_subplot()
    for i, w in enumerate(result.workloads):
        if not w.cdf:
            continue
        color = f"C{i % 10}"
        xs = [max(x, 1e-6) * 1000 for x, _ in w.cdf]
        axes.plot(xs, [q for _, q in w.cdf], color=color, label=w.workload)
        for target in w.slo:
            axes.axvline(target.target * 1000, color=color, linestyle="--", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlabel("end-to-end latency (ms, log scale); dashed: SLO targets")
    axes.set_ylabel("fraction of requests")
    axes.grid(True, which="both", alpha=0.3)
    if result.workloads:
        axes.legend(fontsize="small", ncols=2)
    return _svg(figure)


def _shade_faults(axes: Any, result: SimulationResult, scale: float) -> None:
    for fault in result.faults:
        if fault.start >= result.duration:
            continue
        end = min(fault.end, result.duration)
        axes.axvspan(fault.start / scale, end / scale, color="#d62728", alpha=0.12)
        axes.text(
            fault.start / scale, 1.0, f" {fault.type} {fault.target}",
            transform=axes.get_xaxis_transform(), fontsize="x-small", va="top",
        )  # fmt: skip


def _p99_figure(result: SimulationResult) -> str:
    figure = _new_figure()
    axes = figure.add_subplot()
    minutes = [t / 60 for t in result.series.starts]
    for i, w in enumerate(result.workloads):
        series = result.series.workloads[w.workload]
        values = [v * 1000 if v is not None else math.nan for v in series.p99]
        axes.plot(minutes, values, color=f"C{i % 10}", label=w.workload, drawstyle="steps-post")
    _shade_faults(axes, result, 60.0)
    axes.set_xlabel(f"minutes (one point per {format_duration(result.series.bucket)})")
    axes.set_ylabel("p99 latency (ms)")
    axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    if result.workloads:
        axes.legend(fontsize="small", ncols=2)
    return _svg(figure)


def _heatmap_figure(result: SimulationResult) -> str:
    import numpy as np

    series = result.series.site_utilisation
    busiest = sorted(series, key=lambda s: -float(np.mean(series[s])))[:HEATMAP_SITES]
    height = 1.5 + 0.22 * max(len(busiest), 1)
    figure = _new_figure(9.0, height)
    axes = figure.add_subplot()
    if not busiest:
        axes.text(0.5, 0.5, "no site served requests", ha="center", transform=axes.transAxes)
        return _svg(figure)
    grid = np.array([series[s] for s in busiest])
    end = (result.series.starts[-1] + result.series.bucket) / 60 if result.series.starts else 1
    # Scale to the busiest cell (at least 10%) so lightly used fleets still show contrast.
    top = max(0.1, math.ceil(float(grid.max(initial=0.0)) * 10) / 10)
    image = axes.imshow(
        grid, aspect="auto", vmin=0.0, vmax=top, cmap="viridis",
        extent=(0.0, end, len(busiest) - 0.5, -0.5), interpolation="nearest",
    )  # fmt: skip
    axes.set_yticks(range(len(busiest)), labels=busiest, fontsize="x-small")
    axes.set_xlabel("minutes (dashed: fault windows)")
    for fault in result.faults:
        for edge in (fault.start, fault.end):
            if edge <= result.duration:
                axes.axvline(edge / 60, color="white", linestyle="--", linewidth=1)
    figure.colorbar(image, ax=axes, label="utilisation")
    if len(series) > len(busiest):
        axes.set_title(f"the {len(busiest)} busiest of {len(series)} sites", fontsize="small")
    return _svg(figure)


def _sweep_figure(
    parameter: str, values: Sequence[float], results: Sequence[SimulationResult]
) -> str:
    figure = _new_figure(9.0, 3.6)
    attainment_axes, cost_axes = figure.subplots(1, 2)
    names = [w.workload for w in results[0].workloads]
    for i, name in enumerate(names):
        color = f"C{i % 10}"
        attainment = [r.workload(name).slo_attainment for r in results]
        cost = [r.workload(name).cost.per_1k_requests for r in results]
        attainment_axes.plot(
            values, [100 * a if a is not None else math.nan for a in attainment],
            marker="o", color=color, label=name,
        )  # fmt: skip
        cost_axes.plot(
            values, [c if c is not None else math.nan for c in cost], marker="o", color=color
        )
    attainment_axes.set_xlabel(parameter)
    attainment_axes.set_ylabel("SLO attainment (%)")
    cost_axes.set_xlabel(parameter)
    cost_axes.set_ylabel("cost per 1,000 requests")
    for axes in (attainment_axes, cost_axes):
        axes.grid(True, alpha=0.3)
    if names:
        attainment_axes.legend(fontsize="small")
    return _svg(figure)
