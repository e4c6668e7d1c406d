"""``fleetplane site cordon|uncordon|drain|lost|bootstrap-token``: operator commands on a site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from fleetplane.cli.client import CA_OPTION, SERVER_OPTION, TOKEN_OPTION, connect
from fleetplane.cli.main import app
from fleetplane.cli.output import (
    OUTPUT_OPTION,
    OutputFormat,
    emit_document,
    show_secret_once,
    user_errors,
)

site_app = typer.Typer(
    help="Cordon, drain or declare a site lost; enrol its agent (operator, admin).",
    no_args_is_help=True,
)
app.add_typer(site_app, name="site")

SITE_ARGUMENT = typer.Argument(..., help="Name of the Site.")
SITES = "/apis/fleetplane/v1/sites"

# What each operation does, said once the server has done it.
_DONE = {
    "cordon": "cordoned: no new workloads are placed there; what runs there stays",
    "uncordon": "uncordoned: it takes new workloads again",
    "drain": "draining: its workloads are re-placed elsewhere and nothing new goes there",
    "lost": "declared Lost: its workloads are re-placed elsewhere (`site uncordon` does not "
    "undo this; the site's agent reporting again does not either)",
}


def _operate(
    operation: str,
    name: str,
    output: OutputFormat,
    server: str | None,
    token: str | None,
    ca_cert: Path | None,
) -> None:
    with connect(server, token, ca_cert) as client:
        updated: dict[str, Any] = client.request("POST", f"{SITES}/{name}/{operation}")
    if output is not OutputFormat.table:
        emit_document(updated, output)
        return
    print(f"site {name} {_DONE[operation]}")


def _register(operation: str, summary: str) -> None:
    """One command per operation: they differ only in the route and the help text."""

    @site_app.command(operation, help=summary)
    @user_errors
    def command(
        name: str = SITE_ARGUMENT,
        output: OutputFormat = OUTPUT_OPTION,
        server: str | None = SERVER_OPTION,
        token: str | None = TOKEN_OPTION,
        ca_cert: Path | None = CA_OPTION,
    ) -> None:
        _operate(operation, name, output, server, token, ca_cert)


_register("cordon", "Place nothing new on the site; leave what runs there.")
_register("uncordon", "Undo cordon and drain: the site takes new workloads again.")
_register("drain", "Cordon the site and move its workloads elsewhere.")
_register(
    "lost", "Declare the site lost: its workloads are re-placed (an Unreachable site keeps them)."
)


@site_app.command("bootstrap-token")
@user_errors
def bootstrap_token(
    name: str = SITE_ARGUMENT,
    ttl: str = typer.Option("15m", "--ttl", help="How long the token may be used, e.g. 15m, 1h."),
    output: OutputFormat = OUTPUT_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """A one-time token the site's agent enrols with; printed once on stdout (admin)."""
    with connect(server, token, ca_cert) as client:
        created: dict[str, Any] = client.request(
            "POST", f"{SITES}/{name}/bootstrap-tokens", params={"ttl": ttl}
        )
    show_secret_once(
        created,
        output,
        f"bootstrap token {created['tokenId']} for site {created['site']}, one use, expires "
        f"{created['expiresAt']}; shown once:",
    )
