"""``apply``, ``get``, ``describe``, ``delete``, ``watch``: the kubectl-like client commands."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from fleetplane.cli.client import (
    API,
    CA_OPTION,
    SERVER_OPTION,
    TOKEN_OPTION,
    ClientError,
    ControlClient,
    Gone,
    Unreachable,
    connect,
)
from fleetplane.cli.columns import print_columns
from fleetplane.cli.main import app
from fleetplane.cli.output import (
    OUTPUT_OPTION,
    OutputFormat,
    dump_yaml,
    emit_document,
    stderr,
    stdout,
    user_errors,
)
from fleetplane.errors import Problem, SourcePosition, ValidationError, did_you_mean
from fleetplane.model.kinds import KINDS
from fleetplane.model.loader import YAML_SUFFIXES

APPLY_FILENAME = "<apply>"


class GetFormat(StrEnum):
    table = "table"
    wide = "wide"
    yaml = "yaml"
    json = "json"


def plural_of(text: str) -> str:
    """``site``, ``sites``, ``Site`` or ``SITES`` → ``sites``; ValidationError otherwise."""
    wanted = text.lower()
    for kind, cls in KINDS.items():
        if wanted in (kind.lower(), cls.PLURAL):
            return cls.PLURAL
    names = [*KINDS, *(cls.PLURAL for cls in KINDS.values())]
    raise ValidationError(
        Problem(
            f"unknown kind {text!r}",
            hint=did_you_mean(text, names) or f"known kinds: {', '.join(KINDS)}",
        )
    )


# ----------------------------------------------------------------- apply


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(
            f
            for f in path.rglob("*")
            if f.suffix in YAML_SUFFIXES
            and f.is_file()
            and not any(p.startswith(".") for p in f.relative_to(path).parts)
        )
        if not files:
            raise ValidationError(Problem("no *.yaml or *.yml files", SourcePosition(str(path))))
        return files
    if not path.is_file():
        raise ValidationError(Problem("no such file or directory", SourcePosition(str(path))))
    return [path]


class _Bundle:
    """Several files sent as one YAML stream; maps positions back to each file."""

    def __init__(self, paths: list[Path]) -> None:
        parts: list[str] = []
        self.starts: list[tuple[int, str]] = []
        line = 1
        for file in paths:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise ValidationError(
                    Problem(f"cannot read file: {error}", SourcePosition(str(file)))
                ) from None
            if not text.endswith("\n"):
                text += "\n"
            self.starts.append((line, str(file)))
            parts.append(text)
            line += text.count("\n")
            parts.append("---\n")
            line += 1
        self.text = "".join(parts)

    def locate(self, line: int) -> tuple[str, int]:
        file, start = self.starts[0][1], self.starts[0][0]
        for begin, name in self.starts:
            if begin <= line:
                file, start = name, begin
        return file, line - start + 1

    def explain(self, error: ClientError) -> ClientError:
        """The server's problems with positions in the user's files, not the bundle."""
        causes = (error.body.get("details") or {}).get("causes")
        if not causes:
            return error
        problems = []
        for cause in causes:
            position = None
            if isinstance(cause.get("line"), int):
                file, line = self.locate(cause["line"])
                position = SourcePosition(file, line, cause.get("column"))
            problems.append(
                Problem(cause.get("message", ""), position, cause.get("field"), cause.get("hint"))
            )
        explained = type(error)(str(ValidationError(problems)), error.body)
        return explained


@app.command()
@user_errors
def apply(
    filename: Annotated[
        Path, typer.Option("-f", "--filename", help="YAML file or directory.")
    ],
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would change."),
    output: OutputFormat = OUTPUT_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """Create or update every resource in the files, all in one transaction (or none)."""
    bundle = _Bundle(_files(filename))
    with connect(server, token, ca_cert) as client:
        try:
            result = client.request(
                "POST",
                f"{API}/apply",
                params={"dryRun": str(dry_run).lower(), "filename": APPLY_FILENAME},
                content=bundle.text.encode("utf-8"),
                headers={"Content-Type": "application/yaml"},
            )
        except ClientError as error:
            raise bundle.explain(error) from None
    if output is not OutputFormat.table:
        emit_document(result, output)
        return
    if dry_run:
        stderr.print("dry run: nothing was written", highlight=False)
    for item in result["results"]:
        target = f"{item['kind']}/{item['name']}"
        verb = item["action"]
        if dry_run and verb != "unchanged":
            verb = f"would be {verb}"
        stdout.print(f"{target} {verb}", highlight=False, markup=False)
        for change in item.get("changes", []):
            before = _short(change.get("before", "<absent>"))
            after = _short(change.get("after", "<absent>"))
            stdout.print(f"    {change['path']}: {before} → {after}", highlight=False, markup=False)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------- get


@app.command()
@user_errors
def get(
    kind: str = typer.Argument(..., help="Kind or plural, e.g. site, sites, Workload."),
    name: str | None = typer.Argument(None, help="One resource; all when left out."),
    output: Annotated[
        GetFormat, typer.Option("-o", "--output", help="table, wide, yaml or json.")
    ] = GetFormat.table,
    selector: str | None = typer.Option(
        None, "-l", "--selector", help="Label selector, e.g. tier=edge,region!=eu."
    ),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """Show resources as a table, YAML or JSON."""
    plural = plural_of(kind)
    with connect(server, token, ca_cert) as client:
        if name:
            document = client.get(f"{API}/{plural}/{name}")
            items = [document]
        else:
            document = client.get(f"{API}/{plural}", labelSelector=selector)
            items = document["items"]
    if output in (GetFormat.yaml, GetFormat.json):
        emit_document(document, OutputFormat(output.value))
        return
    _table(items, wide=output is GetFormat.wide)


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    created = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int((datetime.now(UTC) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _table(items: list[dict[str, Any]], *, wide: bool) -> None:
    headers = ["NAME", "VERSION", "GENERATION", "AGE"]
    if wide:
        headers += ["LABELS", "STATUS"]
    rows = []
    for item in items:
        metadata = item.get("metadata", {})
        row = [
            str(metadata.get("name", "")),
            str(metadata.get("resourceVersion", "")),
            str(metadata.get("generation", "")),
            _age(metadata.get("creationTimestamp")),
        ]
        if wide:
            labels = ",".join(f"{k}={v}" for k, v in sorted(metadata.get("labels", {}).items()))
            status = item.get("status") or {}
            row += [labels or "-", str(status.get("reachability", "-"))]
        rows.append(row)
    print_columns(headers, rows)


# -------------------------------------------------------------- describe


@app.command()
@user_errors
def describe(
    kind: str = typer.Argument(..., help="Kind or plural."),
    name: str = typer.Argument(..., help="Resource name."),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """Show one resource in full: metadata, spec and status."""
    plural = plural_of(kind)
    with connect(server, token, ca_cert) as client:
        document = client.get(f"{API}/{plural}/{name}")
    metadata = document["metadata"]
    lines = [
        f"Name:          {metadata['name']}",
        f"Kind:          {document['kind']}",
        f"UID:           {metadata.get('uid', '-')}",
        f"Version:       {metadata.get('resourceVersion', '-')}",
        f"Generation:    {metadata.get('generation', '-')}",
        f"Created:       {metadata.get('creationTimestamp', '-')}",
        f"Updated:       {metadata.get('updateTimestamp', '-')}",
        "Labels:        "
        + (", ".join(f"{k}={v}" for k, v in sorted(metadata.get("labels", {}).items())) or "-"),
        "Annotations:   "
        + (", ".join(f"{k}={v}" for k, v in sorted(metadata.get("annotations", {}).items()))
           or "-"),
        "Spec:",
        _indent(dump_yaml(document.get("spec", {}))),
        "Status:",
        _indent(dump_yaml(document["status"])) if document.get("status") else "  -",
    ]
    sys.stdout.write("\n".join(lines) + "\n")


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.rstrip("\n").splitlines())


# ---------------------------------------------------------------- delete


@app.command()
@user_errors
def delete(
    kind: str = typer.Argument(..., help="Kind or plural."),
    name: str = typer.Argument(..., help="Resource name."),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """Delete one resource."""
    plural = plural_of(kind)
    with connect(server, token, ca_cert) as client:
        document = client.request("DELETE", f"{API}/{plural}/{name}")
    stdout.print(f"{document['kind']}/{name} deleted", highlight=False, markup=False)


# ----------------------------------------------------------------- watch


@app.command()
@user_errors
def watch(
    kind: str = typer.Argument(..., help="Kind or plural."),
    selector: str | None = typer.Option(None, "-l", "--selector", help="Label selector."),
    resource_version: str | None = typer.Option(
        None, "--resource-version", help="Resume after this version (default: list first)."
    ),
    output: OutputFormat = OUTPUT_OPTION,
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.0, help="Stop after this many seconds (default: never)."
    ),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """Stream changes as they happen; reconnects and resumes where it left off."""
    plural = plural_of(kind)
    deadline = None if timeout is None else time.monotonic() + timeout
    with connect(server, token, ca_cert) as client:
        _watch_loop(client, plural, selector, resource_version, output, deadline)


def _watch_loop(
    client: ControlClient,
    plural: str,
    selector: str | None,
    version: str | None,
    output: OutputFormat,
    deadline: float | None,
) -> None:
    backoff = 0.5
    while deadline is None or time.monotonic() < deadline:
        params: dict[str, Any] = {"watch": "true", "labelSelector": selector}
        if version is not None:
            params["resourceVersion"] = version
        if deadline is not None:
            params["timeoutSeconds"] = max(deadline - time.monotonic(), 0.0)
        try:
            for event in client.stream_lines(f"{API}/{plural}", _present(params)):
                if event["type"] == "ERROR":
                    raise Gone(str(event["object"].get("message", "watch expired")))
                version = str(event["object"]["metadata"]["resourceVersion"])
                backoff = 0.5
                if event["type"] != "BOOKMARK":
                    _print_event(event, output)
        except Gone as error:
            stderr.print(f"watch: {error}; listing again", highlight=False, markup=False)
            version = None
        except Unreachable as error:
            stderr.print(f"watch: {error}; retrying", highlight=False, markup=False)
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _print_event(event: dict[str, Any], output: OutputFormat) -> None:
    if output is OutputFormat.json:
        import json

        sys.stdout.write(json.dumps(event) + "\n")
    elif output is OutputFormat.yaml:
        sys.stdout.write("---\n" + dump_yaml(event))
    else:
        document = event["object"]
        metadata = document["metadata"]
        sys.stdout.write(
            f"{event['type']:<9} {document['kind']}/{metadata['name']} "
            f"resourceVersion={metadata['resourceVersion']}\n"
        )
    sys.stdout.flush()
