"""``fleetplane serve``: the control plane's API server (and its controllers)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn

from fleetplane.cli.main import app
from fleetplane.cli.output import user_errors
from fleetplane.control.settings import (
    AUDIT_KEY_ENV,
    DEFAULT_DATABASE,
    DEFAULT_LISTEN,
    SECRETS_KEY_ENV,
    Limits,
    Listen,
    Settings,
    load_optional_keyring,
)
from fleetplane.errors import ValidationError

if TYPE_CHECKING:
    from fleetplane.control.plane import ControlPlane

DATABASE_ENV = "FLEETPLANE_DATABASE"


class _Server(uvicorn.Server):
    """Ends open watches when asked to stop, so shutdown does not wait for them."""

    def __init__(self, config: uvicorn.Config, plane: ControlPlane) -> None:
        super().__init__(config)
        self.plane = plane

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        loop = self.plane.notifier.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.plane.notifier.close)
        super().handle_exit(sig, frame)


@app.command()
@user_errors
def serve(
    database: str = typer.Option(
        DEFAULT_DATABASE,
        "--database",
        envvar=DATABASE_ENV,
        help="sqlite:///PATH (embedded default) or postgresql+psycopg://USER@HOST/DB.",
    ),
    listen: str = typer.Option(
        DEFAULT_LISTEN, "--listen", help="HOST:PORT of the human API."
    ),
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", help="PEM certificate chain: serve the API over HTTPS."),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")
    ] = None,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(
            "--admin-token-file",
            help="Also write the first admin token to this file (mode 0600) when the store "
            "is new.",
        ),
    ] = None,
    secrets_key_file: Annotated[
        Path | None,
        typer.Option(
            "--secrets-key-file", help=f"Key(s) for Secrets at rest (else ${SECRETS_KEY_ENV})."
        ),
    ] = None,
    audit_key_file: Annotated[
        Path | None,
        typer.Option(
            "--audit-key-file",
            help=f"Key(s) for an HMAC-keyed audit chain (else ${AUDIT_KEY_ENV}; default "
            "unkeyed).",
        ),
    ] = None,
    fleet: str = typer.Option("default", "--fleet", help="Fleet name (SPIFFE trust domain)."),
    max_body: int = typer.Option(
        Limits.max_body_bytes, "--max-body-bytes", min=1024, help="Largest request body."
    ),
    write_rate: float = typer.Option(
        Limits.writes_per_second,
        "--write-rate",
        min=0.0,
        help="Writes per second per identity (0: unlimited).",
    ),
    write_burst: int = typer.Option(
        Limits.write_burst, "--write-burst", min=1, help="Writes at once per identity."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run the control plane API (resources, apply, watch, tokens, audit) on --listen."""
    from fleetplane.control.app import create_app

    if (tls_cert is None) != (tls_key is None):
        raise ValidationError("give both --tls-cert and --tls-key, or neither")
    settings = Settings(
        database_url=database,
        listen=Listen.parse(listen),
        tls_cert=tls_cert,
        tls_key=tls_key,
        admin_token_file=admin_token_file,
        secrets_keyring=load_optional_keyring(secrets_key_file, SECRETS_KEY_ENV),
        audit_keyring=load_optional_keyring(audit_key_file, AUDIT_KEY_ENV),
        fleet_name=fleet,
        limits=Limits(max_body, write_rate, write_burst),
    )
    if not settings.tokens_allowed:
        logging.getLogger("fleetplane").warning(
            "listening on %s without TLS: API tokens will be refused", settings.listen
        )
    api = create_app(settings)
    config = uvicorn.Config(
        api,
        host=settings.listen.host,
        port=settings.listen.port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_level=log_level.lower(),
        # Watches are long-lived: a shutdown should not wait for them forever.
        timeout_graceful_shutdown=5,
    )
    _Server(config, api.state.plane).run()
