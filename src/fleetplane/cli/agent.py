"""`fleetplane agent`: run the site agent (enrol, sync, run workloads, report).

The same agent as ``fleetplane-agent`` (:mod:`fleetplane.agent.command`), which
is what a site should run: this command loads the whole CLI first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleetplane.cli.main import app
from fleetplane.cli.output import user_errors


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
    runtime: Annotated[str, typer.Option(help="process | slurm | simulated")] = "process",
    health_listen: Annotated[
        str, typer.Option(help="HOST:PORT of the agent's /healthz and /metrics")
    ] = "127.0.0.1:9464",
    heartbeat_interval: Annotated[float, typer.Option(help="seconds between status writes")] = 5.0,
    telemetry_interval: Annotated[float, typer.Option(help="seconds per interval")] = 10.0,
    pool_check: Annotated[
        list[str] | None,
        typer.Option(help="POOL=COMMAND health check of a node pool (exit 0 = healthy); "
                          "repeatable"),
    ] = None,
    pool_check_interval: Annotated[float, typer.Option(help="seconds between pool checks")] = 5.0,
    log_level: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
) -> None:
    """Run the site agent: it keeps the site's workloads running, connected or not."""
    from fleetplane.agent.command import checked_config, run

    config = checked_config(
        server=server, site=site, data_dir=data_dir, ca_cert=ca_cert,
        bootstrap_token=bootstrap_token, agent_id=agent_id, runtime=runtime,
        health_listen=health_listen, heartbeat_interval=heartbeat_interval,
        telemetry_interval=telemetry_interval, pool_checks=pool_check,
        pool_check_interval=pool_check_interval,
    )
    run(config, log_level)
