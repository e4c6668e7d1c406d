"""``fleetplane serve``: the control plane's API server (and its controllers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
import uvicorn

from fleetplane.cli.main import app
from fleetplane.cli.output import user_errors
from fleetplane.control.controllers.settings import ControllerSettings
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
    from fleetplane.control.plane import Controller, ControlPlane

DATABASE_ENV = "FLEETPLANE_DATABASE"


class _Server(uvicorn.Server):
    """Ends open watches when asked to stop, so shutdown does not wait for them."""

    def __init__(
        self, config: uvicorn.Config, plane: ControlPlane, agent_port: uvicorn.Server | None
    ) -> None:
        super().__init__(config)
        self.plane = plane
        self.agent_port = agent_port

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        loop = self.plane.notifier.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.plane.notifier.close)
        if self.agent_port is not None:
            self.agent_port.handle_exit(sig, frame)
        super().handle_exit(sig, frame)


async def _serve_both(human: _Server, agent_port: uvicorn.Server | None) -> None:
    """The human API, then (once its lifespan has opened the store) the agent port, in one loop."""
    from fleetplane.control.gc_pacing import pace_collections

    pacing = asyncio.create_task(pace_collections(), name="gc-pacing")
    try:
        await _serve_servers(human, agent_port)
    finally:
        pacing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pacing


async def _serve_servers(human: _Server, agent_port: uvicorn.Server | None) -> None:
    task = asyncio.create_task(human.serve(), name="human-api")
    if agent_port is None:
        await task
        return
    # The agent app shares the human app's notifier, which its lifespan binds to this loop.
    while not human.started and not task.done():
        await asyncio.sleep(0.05)  # polling for the other server's startup, not a race
    if task.done():
        await task
        return
    agent_task = asyncio.create_task(agent_port.serve(), name="agent-port")
    await asyncio.wait({task, agent_task}, return_when=asyncio.FIRST_COMPLETED)
    # One server failing to run (e.g. its port is taken) stops the other too.
    human.should_exit = agent_port.should_exit = True
    await asyncio.gather(task, agent_task)


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
    agent_listen: Annotated[
        str | None,
        typer.Option(
            "--agent-listen",
            help="HOST:PORT of the agent port (mTLS, e.g. 127.0.0.1:8443); off when not given.",
        ),
    ] = None,
    ca_dir: Annotated[
        Path,
        typer.Option(
            "--ca-dir",
            help="Directory of the fleet CA (ca.crt, ca.key; created on first start) that "
            "issues agent certificates and the agent port's certificate.",
        ),
    ] = Path("fleetplane-ca"),
    lease_ttl: float = typer.Option(
        ControllerSettings.lease_ttl,
        "--lease-ttl",
        min=1.0,
        help="Seconds of the controllers' leader lease: a standby replica takes over within it.",
    ),
    heartbeat_timeout: float = typer.Option(
        ControllerSettings.heartbeat_timeout,
        "--heartbeat-timeout",
        min=1.0,
        help="Seconds without a heartbeat before a site is marked Unreachable.",
    ),
    lost_after: Annotated[
        float | None,
        typer.Option(
            "--lost-after",
            min=0.0,
            help="Seconds a site may stay Unreachable before it is declared Lost and its "
            "workloads move (default: never; an operator runs `fleetplane site lost`).",
        ),
    ] = None,
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run the control plane: API on --listen, controllers, agent port on --agent-listen."""
    from fleetplane.control.controllers import build_controllers

    if (tls_cert is None) != (tls_key is None):
        raise ValidationError("give both --tls-cert and --tls-key, or neither")
    agent_address = _agent_address(agent_listen) if agent_listen is not None else None
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
    controller_settings = ControllerSettings(
        lease_ttl=lease_ttl, heartbeat_timeout=heartbeat_timeout, lost_after=lost_after
    )
    run_control_plane(
        settings,
        build_controllers(controller_settings),
        agent_listen=agent_address,
        ca_dir=ca_dir,
        log_level=log_level.lower(),
    )


def run_control_plane(
    settings: Settings,
    controllers: Sequence[Controller],
    *,
    agent_listen: Listen | None = None,
    ca_dir: Path = Path("fleetplane-ca"),
    log_level: str = "info",
) -> None:
    """Serve the human API with ``controllers`` (and the agent port) until SIGINT/SIGTERM.

    What ``serve`` does once its flags are read; benchmarks call it with
    their own controllers.
    """
    from fleetplane.control.app import create_app

    api = create_app(settings, controllers=controllers)
    agent_port = (
        _agent_port(api.state.plane, agent_listen, ca_dir, log_level)
        if agent_listen is not None
        else None
    )
    config = uvicorn.Config(
        api,
        host=settings.listen.host,
        port=settings.listen.port,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        log_level=log_level,
        # Watches are long-lived: a shutdown should not wait for them forever.
        timeout_graceful_shutdown=5,
    )
    human = _Server(config, api.state.plane, agent_port)
    _run(_serve_both(human, agent_port))


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed: TLS and sockets cost several times less CPU."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _agent_address(text: str) -> Listen:
    try:
        return Listen.parse(text)
    except ValidationError:
        raise ValidationError(
            f"--agent-listen {text!r} must be HOST:PORT, e.g. 127.0.0.1:8443 or [::1]:8443"
        ) from None


def _agent_port(
    plane: ControlPlane, listen: Listen, ca_dir: Path, log_level: str
) -> uvicorn.Server:
    from fleetplane.control.agent_api.app import create_agent_app
    from fleetplane.control.agent_api.serving import agent_port_server, load_or_create_ca

    ca = load_or_create_ca(ca_dir, plane.settings.fleet_name)
    app = create_agent_app(plane, ca)
    logging.getLogger("fleetplane").info(
        "agent port on %s (fleet CA in %s; agents trust %s)", listen, ca_dir, ca_dir / "ca.crt"
    )
    return agent_port_server(app, listen, ca, ca_dir, log_level=log_level)
