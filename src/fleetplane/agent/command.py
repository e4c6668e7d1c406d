"""The agent's own entry point: ``fleetplane-agent`` / ``python3 -m fleetplane.agent``.

The agent runs on every site for months, so its process must stay small
(the issue's goal is ≤ 70 MB RSS, KubeEdge's edge agent needs ~70 MB). The
``fleetplane`` command imports every command module (the control plane,
the planner, typer and rich: ~96 MB and ~2 s before the agent does
anything); this module imports only the standard library until it starts
the agent. ``fleetplane agent`` takes the same options and calls
:func:`checked_config` and :func:`run` from here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fleetplane.errors import FleetplaneError, Problem, ValidationError

if TYPE_CHECKING:
    from fleetplane.agent.agent import AgentConfig

RUNTIMES = ("process", "slurm", "simulated")


def _without_httpx_cli() -> None:
    """Keep httpx's own command line (rich, pygments, click: ~6 MB RSS) out of the agent.

    ``import httpx`` imports ``httpx._main`` when rich and click are installed,
    only to offer ``httpx.main``, which the agent never calls. A placeholder
    module in its place is imported instead; it says so if called.
    """
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    import types

    placeholder = types.ModuleType("httpx._main")

    def main() -> None:
        raise SystemExit("httpx's command line is not loaded in the fleetplane agent")

    placeholder.main = main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = placeholder


_without_httpx_cli()


def checked_config(
    *, server: str, site: str, data_dir: Path, ca_cert: Path, bootstrap_token: str | None,
    agent_id: str | None, runtime: str, health_listen: str, heartbeat_interval: float,
    telemetry_interval: float, pool_checks: list[str] | None = None,
    pool_check_interval: float = 5.0,
) -> AgentConfig:
    """The agent's configuration from command-line values, or a ValidationError saying which."""
    from fleetplane.agent.agent import AgentConfig, default_agent_id

    if runtime not in RUNTIMES:
        raise ValidationError(Problem(f"--runtime {runtime!r} is not known",
                                      field_path="--runtime",
                                      hint=f"use one of {', '.join(RUNTIMES)}"))
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
    return AgentConfig(
        server=server, site=site, data_dir=data_dir, ca_pem=ca_cert.read_bytes(),
        bootstrap_token=bootstrap_token, agent_id=agent_id or default_agent_id(),
        runtime=runtime, health_host=host.strip("[]"), health_port=int(port),
        heartbeat_interval=heartbeat_interval, telemetry_interval=telemetry_interval,
        pool_checks=parse_pool_checks(pool_checks or []), pool_check_interval=pool_check_interval,
    )


def parse_pool_checks(values: list[str]) -> dict[str, str]:
    checks: dict[str, str] = {}
    for value in values:
        pool, _, command = value.partition("=")
        if not pool or not command:
            raise ValidationError(Problem(
                f"--pool-check {value!r} is not POOL=COMMAND", field_path="--pool-check",
                hint="e.g. --pool-check 'gpu=nvidia-smi -L'"))
        checks[pool] = command
    return checks


def run(config: AgentConfig, log_level: str = "info") -> None:
    """Run the agent until SIGTERM or SIGINT; its workloads keep running after it exits."""
    configure_logging(log_level)
    asyncio.run(_run(config))


# httpx and httpcore log every request at INFO: one line per heartbeat, status write and
# telemetry upload (about one a second per agent), which buried the agent's own messages.
QUIET_LOGGERS = ("httpx", "httpcore")


def configure_logging(log_level: str) -> None:
    """The agent's log format; the HTTP libraries speak only at WARNING unless debugging."""
    level = logging.getLevelName(log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet = level if level == logging.DEBUG else logging.WARNING
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)


async def _run(config: AgentConfig) -> None:
    from fleetplane.agent.agent import Agent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    await Agent(config).run(stop)


def parser() -> argparse.ArgumentParser:
    import os

    parse = argparse.ArgumentParser(
        prog="fleetplane-agent",
        description="Run the site agent: it keeps the site's workloads running, connected or not.",
    )
    parse.add_argument("--server", required=True,
                       help="agent port of the control plane (https://HOST:PORT)")
    parse.add_argument("--site", required=True, help="the site this agent runs")
    parse.add_argument("--data-dir", required=True, type=Path,
                       help="key, certificate, local state, logs")
    parse.add_argument("--ca-cert", required=True, type=Path,
                       help="the fleet CA certificate (PEM) to trust")
    parse.add_argument("--bootstrap-token", default=os.environ.get("FLEETPLANE_BOOTSTRAP_TOKEN"),
                       help="one-time token for the first enrolment "
                            "(env FLEETPLANE_BOOTSTRAP_TOKEN)")
    parse.add_argument("--agent-id", default=None, help="default: the host name")
    parse.add_argument("--runtime", default="process", help=" | ".join(RUNTIMES))
    parse.add_argument("--health-listen", default="127.0.0.1:9464",
                       help="HOST:PORT of the agent's /healthz and /metrics")
    parse.add_argument("--heartbeat-interval", type=float, default=5.0,
                       help="seconds between status writes")
    parse.add_argument("--telemetry-interval", type=float, default=10.0,
                       help="seconds per telemetry interval")
    parse.add_argument("--pool-check", action="append", default=[], metavar="POOL=COMMAND",
                       help="health check of a node pool: a shell command, exit 0 = healthy; "
                            "a failing pool's replicas move to its failover pools (repeatable)")
    parse.add_argument("--pool-check-interval", type=float, default=5.0,
                       help="seconds between pool health checks")
    parse.add_argument("--log-level", default="info", help="debug | info | warning")
    return parse


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        config = checked_config(
            server=args.server, site=args.site, data_dir=args.data_dir, ca_cert=args.ca_cert,
            bootstrap_token=args.bootstrap_token, agent_id=args.agent_id, runtime=args.runtime,
            health_listen=args.health_listen, heartbeat_interval=args.heartbeat_interval,
            telemetry_interval=args.telemetry_interval, pool_checks=args.pool_check,
            pool_check_interval=args.pool_check_interval,
        )
    except FleetplaneError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    run(config, args.log_level)
