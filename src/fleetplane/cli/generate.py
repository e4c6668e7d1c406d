"""``fleetplane generate``: write a synthetic fleet of any size as YAML, one file per kind."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetplane.cli.main import app
from fleetplane.cli.output import (
    OUTPUT_OPTION,
    OutputFormat,
    dump_json,
    emit_document,
    stderr,
    user_errors,
)
from fleetplane.errors import Problem, ValidationError
from fleetplane.model.synthetic import fleet_documents, generate_fleet, render_yaml

# Kind → file, in the order the files are written (the examples use the same names).
FILES: dict[str, str] = {
    "Site": "sites.yaml",
    "Link": "links.yaml",
    "NodeImage": "node-images.yaml",
    "DataSource": "data-sources.yaml",
    "Workload": "workloads.yaml",
    "PlacementPolicy": "policy.yaml",
}


@app.command()
@user_errors
def generate(
    sites: int = typer.Option(..., "--sites", min=1, help="Number of sites (hubs, HPC, edge)."),
    workloads: int = typer.Option(..., "--workloads", min=0, help="Number of workloads."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same fleet."),
    out: Path | None = typer.Option(  # noqa: B008 (typer declares options this way)
        None,
        "--out",
        help="Directory to write sites.yaml, links.yaml, ... into; without it the "
        "documents go to stdout.",
    ),
    output: OutputFormat = OUTPUT_OPTION,
) -> None:
    """Generate a realistic synthetic fleet: regions, edge sites, links, data sources, workloads.

    Deterministic for a seed. Progress and a summary go to stderr. With --out,
    stdout stays empty (or holds a JSON/YAML summary with -o json|yaml);
    without it, stdout holds the documents (YAML, or a JSON list with -o json).
    """
    if out is not None and out.exists() and not out.is_dir():
        raise ValidationError(
            Problem(
                f"{out} exists and is not a directory",
                field_path="--out",
                hint="give a directory; it is created when missing",
            )
        )
    started = time.perf_counter()
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in FILES}
    with _progress() as progress:
        task = progress.add_task("generating", total=3 + len(FILES))
        fleet = generate_fleet(sites, workloads, seed)
        progress.update(task, advance=2, description="serialising")
        for document in fleet_documents(fleet):
            by_kind[document["kind"]].append(document)
        progress.advance(task)
        written: dict[str, int] = {}
        if out is None:
            _write_stdout(by_kind, output)
            progress.update(task, advance=len(FILES))
        else:
            out.mkdir(parents=True, exist_ok=True)
            for kind, file in FILES.items():
                progress.update(task, description=f"writing {file}")
                text = render_yaml(by_kind[kind])
                (out / file).write_text(text, encoding="utf-8")
                written[file] = len(text.encode("utf-8"))
                progress.advance(task)
    elapsed = time.perf_counter() - started
    _summary(by_kind, out, written, seed, elapsed)
    if out is not None and output is not OutputFormat.table:
        emit_document(_summary_document(by_kind, out, written, seed), output)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )


def _write_stdout(by_kind: dict[str, list[dict[str, Any]]], output: OutputFormat) -> None:
    documents = [doc for docs in by_kind.values() for doc in docs]
    if output is OutputFormat.json:
        sys.stdout.write(dump_json(documents))
    else:
        sys.stdout.write(render_yaml(documents))
    sys.stdout.flush()


def _summary(
    by_kind: dict[str, list[dict[str, Any]]],
    out: Path | None,
    written: dict[str, int],
    seed: int,
    elapsed: float,
) -> None:
    title = f"synthetic fleet, seed {seed}" + (f", written to {out}" if out is not None else "")
    table = Table(title=title, title_justify="left")
    table.add_column("kind")
    table.add_column("count", justify="right")
    if out is not None:
        table.add_column("file")
        table.add_column("size", justify="right")
    for kind, file in FILES.items():
        row = [kind, f"{len(by_kind[kind]):,}"]
        if out is not None:
            row += [file, f"{written[file] / 1e6:.1f} MB"]
        table.add_row(*row)
    stderr.print(table)
    details = _details(by_kind)
    if details:
        stderr.print(details, highlight=False)
    stderr.print(f"done in {elapsed:.1f}s", highlight=False)


def _details(by_kind: dict[str, list[dict[str, Any]]]) -> str:
    """One line on what was generated: tiers, zones, workload classes, hard workloads."""
    tiers = Counter(doc["spec"]["tier"] for doc in by_kind["Site"])
    zones = sorted({doc["spec"]["residencyZone"] for doc in by_kind["Site"]})
    classes = Counter(doc["spec"]["class"] for doc in by_kind["Workload"])
    hard = sum(
        1
        for doc in by_kind["Workload"]
        if doc["metadata"].get("labels", {}).get("difficulty") == "hard"
    )
    parts = [
        "sites: " + ", ".join(f"{n:,} {tier}" for tier, n in sorted(tiers.items())),
        "zones: " + ", ".join(zones),
    ]
    if classes:
        parts.append("workloads: " + ", ".join(f"{n:,} {c}" for c, n in sorted(classes.items())))
        parts.append(f"{hard:,} deliberately hard")
    return "; ".join(parts)


def _summary_document(
    by_kind: dict[str, list[dict[str, Any]]], out: Path, written: dict[str, int], seed: int
) -> dict[str, Any]:
    return {
        "out": str(out),
        "seed": seed,
        "files": [
            {
                "kind": kind,
                "file": str(out / file),
                "count": len(by_kind[kind]),
                "bytes": written[file],
            }
            for kind, file in FILES.items()
        ],
    }
