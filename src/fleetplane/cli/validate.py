"""``fleetplane validate``: check a fleet's manifests and report every problem at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from fleetplane.cli.main import app
from fleetplane.cli.output import OUTPUT_OPTION, OutputFormat, emit_document, stderr, user_errors
from fleetplane.errors import Problem
from fleetplane.model.fleet import Fleet
from fleetplane.model.kinds import KINDS
from fleetplane.model.loader import read_fleet

# Singular and plural words for the summary line; a kind missing here is shown by its name.
_NOUNS: dict[str, tuple[str, str]] = {
    "Site": ("site", "sites"),
    "Link": ("link", "links"),
    "NodeImage": ("node image", "node images"),
    "DataSource": ("data source", "data sources"),
    "Workload": ("workload", "workloads"),
    "PlacementPolicy": ("placement policy", "placement policies"),
    "Placement": ("placement", "placements"),
    "Scenario": ("scenario", "scenarios"),
    "SiteDesiredState": ("site desired state", "site desired states"),
    "Secret": ("secret", "secrets"),
}


@app.command()
@user_errors
def validate(
    paths: list[Path] = typer.Argument(  # noqa: B008 (typer declares arguments this way)
        ..., help="Manifest files or directories (read recursively: *.yaml, *.yml)."
    ),
    output: OutputFormat = OUTPUT_OPTION,
) -> None:
    """Check manifests: schema, units, names across files, links between sites.

    Exit 0 when valid, 1 with every problem (file:line:column) otherwise.
    """
    result = read_fleet(*paths)
    counts = _counts(result.fleet)
    if output is not OutputFormat.table:
        emit_document(
            {
                "valid": result.valid,
                "problems": [_problem_document(p) for p in result.problems],
                "counts": counts,
            },
            output,
        )
    elif result.valid:
        typer.echo(f"ok: {summary(counts)}")
    else:
        for problem in result.problems:
            stderr.print(str(problem), markup=False, highlight=False)
        files = {p.position.file for p in result.problems if p.position is not None}
        noun = "problem" if len(result.problems) == 1 else "problems"
        where = f" in {len(files)} file{'s' if len(files) != 1 else ''}" if files else ""
        stderr.print(f"invalid: {len(result.problems)} {noun}{where}", highlight=False)
    if not result.valid:
        raise typer.Exit(1)


def summary(counts: dict[str, int]) -> str:
    """``{"Site": 43, "Link": 120}`` → ``43 sites, 120 links``."""
    parts = []
    for kind, count in counts.items():
        if count:
            singular, plural = _NOUNS.get(kind, (kind, f"{kind}s"))
            parts.append(f"{count} {singular if count == 1 else plural}")
    return ", ".join(parts) if parts else "no resources"


def _counts(fleet: Fleet) -> dict[str, int]:
    return {kind: len(fleet.collection(kind)) for kind in KINDS}


def _problem_document(problem: Problem) -> dict[str, Any]:
    position = problem.position
    return {
        "file": position.file if position else None,
        "line": position.line if position else None,
        "column": position.column if position else None,
        "field": problem.field_path,
        "message": problem.message,
        "hint": problem.hint,
    }
