"""`fleetplane agent`: run the site agent (enrol, sync, run workloads, report)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from fleetplane.cli.main import app
from fleetplane.cli.output import user_errors
from fleetplane.errors import Problem, ValidationError


@app.command()
@user_errors
def agent(
    server: Annotated[str, typer.Option(help="agent port of the control plane (https://HOST:PORT)")],
    site: Annotated[str, typer.Option(help="the site this agent runs")],
    data_dir: Annotated[Path, typer.Option(help="key, certificate, local state, logs")],
    ca_cert: Annotated[Path, typer.Option(help="the fleet CA certificate (PEM) to trust")],
    bootstrap_token: Annotated[
        str | None,
        typer.Option(envvar="FLEETPLANE_BOOTSTRAP_TOKEN",
                     help="one-time token for the first enrolment"),
    ] = None,
    agent_id: Annotated[str | None, typer.Option(help="default: the host name")] = None,
    runtime: Annotated[str, typer.Option(help="process | simulated")] = "process",
    health_listen: Annotated[
        str, typer.Option(help="HOST:PORT of the agent's /healthz and /metrics")
    ] = "127.0.0.1:9464",
    heartbeat_interval: Annotated[float, typer.Option(help="seconds between status writes")] = 5.0,
    telemetry_interval: Annotated[float, typer.Option(help="seconds per interval")] = 10.0,
    log_level: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
) -> None:
    """Run the site agent: it keeps the site's workloads running, connected or not."""
    from fleetplane.agent.agent import AgentConfig, default_agent_id

    if runtime not in ("process", "simulated"):
        raise ValidationError(Problem(f"--runtime {runtime!r} is not known",
                                      field_path="--runtime", hint="use process or simulated"))
    if not server.startswith("https://"):
        raise ValidationError(Problem(f"--server {server!r}: the agent port speaks TLS only",
                                      field_path="--server", hint="use https://HOST:PORT"))
    if not ca_cert.is_file():
        raise ValidationError(Problem(f"--ca-cert {ca_cert}: file not found",
                                      field_path="--ca-cert",
                                      hint="copy the fleet CA certificate (ca.crt) to this host"))
    host, _, port = health_listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValidationError(Problem(f"--health-listen {health_listen!r} is not HOST:PORT",
                                      field_path="--health-listen", hint="e.g. 127.0.0.1:9464"))
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = AgentConfig(
        server=server, site=site, data_dir=data_dir, ca_pem=ca_cert.read_bytes(),
        bootstrap_token=bootstrap_token, agent_id=agent_id or default_agent_id(),
        runtime=runtime, health_host=host, health_port=int(port),
        heartbeat_interval=heartbeat_interval, telemetry_interval=telemetry_interval,
    )
    asyncio.run(_run(config))


async def _run(config: object) -> None:
    from fleetplane.agent.agent import Agent, AgentConfig

    assert isinstance(config, AgentConfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    await Agent(config).run(stop)
