"""``fleetplane token create|list|revoke``: API tokens for people."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from fleetplane.cli.client import CA_OPTION, SERVER_OPTION, TOKEN_OPTION, connect
from fleetplane.cli.columns import print_columns
from fleetplane.cli.main import app
from fleetplane.cli.output import (
    OUTPUT_OPTION,
    OutputFormat,
    emit_document,
    show_secret_once,
    stdout,
    user_errors,
)
from fleetplane.errors import ValidationError

token_app = typer.Typer(help="Create, list and revoke API tokens (admin).", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
@user_errors
def create(
    name: str = typer.Option(..., "--name", help="Who the token is for (login or e-mail)."),
    role: str = typer.Option(..., "--role", help="admin, operator or viewer."),
    ttl: str = typer.Option("30d", "--ttl", help="Lifetime, e.g. 12h, 30d."),
    output: OutputFormat = OUTPUT_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
    database: str | None = typer.Option(
        None,
        "--database",
        help="Break glass: write the token straight into this store, without a server "
        "or a token (for a lost admin token; needs access to the database itself).",
    ),
) -> None:
    """Create a token; it is printed once on stdout and never shown again."""
    if database is not None:
        created = _create_in_store(database, name, role, ttl)
    else:
        with connect(server, token, ca_cert) as client:
            created = client.request(
                "POST", "/api/v1/tokens", json={"name": name, "role": role, "ttl": ttl}
            )
    show_secret_once(
        created,
        output,
        f"token {created['id']} for {created['name']} ({created['role']}), expires "
        f"{created['expiresAt']}; shown once, store it now:",
    )


def _create_in_store(database: str, name: str, role: str, ttl: str) -> dict[str, Any]:
    from fleetplane.control.store import migrate
    from fleetplane.control.store.database import create_store_engine
    from fleetplane.control.store.repository import Store
    from fleetplane.control.store.tokens import save_token
    from fleetplane.model.units import parse_duration
    from fleetplane.security.tokens import create_token

    try:
        lifetime = timedelta(seconds=parse_duration(ttl))
    except ValueError as error:
        raise ValidationError(f"--ttl {ttl!r}: {error}") from None
    engine = create_store_engine(database)
    try:
        if migrate.current_revision(engine) != migrate.head_revision():
            raise ValidationError(
                f"{database} is not a current fleetplane store; run `fleetplane db upgrade`"
            )
        plaintext, record = create_token(name, role, lifetime, now=datetime.now(UTC))
        actor = f"cli:{os.environ.get('USER', 'unknown')} (break glass)"
        save_token(Store(engine), record, actor=actor)
    finally:
        engine.dispose()
    return {
        "id": record.token_id,
        "name": record.name,
        "role": record.role.value,
        "expiresAt": record.expires_at.isoformat(),
        "token": plaintext,
    }


@token_app.command("list")
@user_errors
def list_tokens(
    output: OutputFormat = OUTPUT_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """List tokens (ids, names, roles, expiry; never secrets)."""
    with connect(server, token, ca_cert) as client:
        listing = client.get("/api/v1/tokens")
    if output is not OutputFormat.table:
        emit_document(listing, output)
        return
    rows = []
    for item in listing["items"]:
        state = "revoked" if item["revokedAt"] else "expired" if item["expired"] else "active"
        rows.append(
            [
                item["id"],
                item["name"],
                item["role"],
                item["createdAt"][:19],
                item["expiresAt"][:19],
                state,
            ]
        )
    print_columns(("ID", "NAME", "ROLE", "CREATED", "EXPIRES", "STATE"), rows)


@token_app.command("revoke")
@user_errors
def revoke(
    token_id: str = typer.Argument(..., help="Token id (the part after fp_, or the whole token)."),
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """Revoke a token at once; requests with it are refused from now on."""
    if token_id.startswith("fp_"):
        token_id = token_id.split("_")[1]
    with connect(server, token, ca_cert) as client:
        revoked = client.request("DELETE", f"/api/v1/tokens/{token_id}")
    stdout.print(
        f"token {revoked['id']} ({revoked['name']}) revoked", highlight=False, markup=False
    )
