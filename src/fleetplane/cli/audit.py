"""``fleetplane audit log|verify``: read and check the hash-chained audit log."""

from __future__ import annotations

from pathlib import Path

import typer

from fleetplane.cli.client import CA_OPTION, SERVER_OPTION, TOKEN_OPTION, connect
from fleetplane.cli.columns import print_columns
from fleetplane.cli.main import app
from fleetplane.cli.output import OUTPUT_OPTION, OutputFormat, emit_document, stdout, user_errors
from fleetplane.errors import FleetplaneError

audit_app = typer.Typer(help="Read and verify the audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


class AuditBroken(FleetplaneError):
    """The chain does not verify: a record was edited, removed or inserted."""


@audit_app.command("log")
@user_errors
def log(
    after: int = typer.Option(0, "--after", min=0, help="Only records after this sequence."),
    limit: int = typer.Option(1000, "--limit", min=1, max=10_000, help="At most this many."),
    output: OutputFormat = OUTPUT_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """List audit records, oldest first."""
    with connect(server, token, ca_cert) as client:
        listing = client.get("/api/v1/audit", after=after, limit=limit)
    if output is not OutputFormat.table:
        emit_document(listing, output)
        return
    rows = []
    for item in listing["items"]:
        target = f"{item['kind']}/{item['name']}" if item["name"] else item["kind"]
        rows.append([str(item["seq"]), item["time"][:23], item["actor"], item["action"], target])
    print_columns(("SEQ", "TIME", "ACTOR", "ACTION", "TARGET"), rows)


@audit_app.command("verify")
@user_errors
def verify(
    output: OutputFormat = OUTPUT_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """Check the hash chain; exit 1 naming the first bad record if it was tampered with."""
    with connect(server, token, ca_cert) as client:
        result = client.get("/api/v1/audit/verify")
    if output is not OutputFormat.table:
        emit_document(result, output)
    if not result["ok"]:
        raise AuditBroken(
            f"audit log verification failed at record {result['firstBadSeq']}: "
            f"{result['problem']} ({result['checked']} records before it are intact)"
        )
    if output is OutputFormat.table:
        head = result.get("head") or {}
        stdout.print(
            f"audit log intact: {result['checked']} records, head seq {head.get('seq', '-')} "
            f"{head.get('hash', '')}",
            highlight=False,
            markup=False,
        )
