"""`fleetplane serve` as real processes: the agent port over real TLS, site commands, failover.

The agent port is reached with real TLS handshakes (client certificates
issued by the server's own CA through enrolment); leader failover runs two
servers on one PostgreSQL and kills the leader with SIGKILL.
"""

from __future__ import annotations

import signal
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from control_harness import ServerProcess, free_port, running_server, start_server
from fleet_docs import documents, site, wait_for
from typer.testing import CliRunner

from fleetplane.cli.main import app
from fleetplane.security import SpiffeId, build_csr, generate_private_key
from fleetplane.security.keys import private_key_pem
from fleetplane.security.tls import client_context

V1 = "/apis/fleetplane/v1"


def _readyz(server: ServerProcess) -> dict[str, Any] | None:
    try:
        answer = httpx.get(f"{server.url}/readyz", timeout=5.0)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def _leader(server: ServerProcess) -> bool:
    ready = _readyz(server)
    return bool(ready and ready["controllers"]["leader"])


def _site_cli(server: ServerProcess, *args: str) -> Any:
    return CliRunner().invoke(
        app, ["site", *args, "--server", server.url, "--token", server.token]
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerProcess, str, Path]]:
    agent_port = free_port()
    with running_server(
        f"sqlite:///{tmp_path / 'store.db'}",
        tmp_path,
        "--agent-listen", f"127.0.0.1:{agent_port}",
        "--ca-dir", str(tmp_path / "ca"),
        "--fleet", "acme",
    ) as server:
        yield server, f"https://127.0.0.1:{agent_port}", tmp_path / "ca"


def _agent_client(url: str, ca_dir: Path, cert: Path | None = None,
                  key: Path | None = None) -> httpx.Client:
    context = client_context((ca_dir / "ca.crt").read_bytes(), cert_file=cert, key_file=key)
    return httpx.Client(base_url=url, verify=context, timeout=10.0)


def _enrol(server: ServerProcess, url: str, ca_dir: Path, name: str, workdir: Path
           ) -> tuple[Path, Path]:
    issued = _site_cli(server, "bootstrap-token", name, "--ttl", "5m")
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip().splitlines()[-1]
    key = generate_private_key()
    csr = build_csr(key, SpiffeId("acme", name, "a1")).decode("ascii")
    with _agent_client(url, ca_dir) as anonymous:
        answer = anonymous.post("/agent/v1/enrol",
                                json={"token": token, "csr": csr, "agentId": "a1"})
    assert answer.status_code == 200, answer.text
    cert_file, key_file = workdir / f"{name}.crt", workdir / f"{name}.key"
    cert_file.write_text(answer.json()["certificate"])
    key_file.write_bytes(private_key_pem(key))
    return cert_file, key_file


def test_agent_port_over_real_tls_and_site_commands(served: Any, tmp_path: Path) -> None:
    server, url, ca_dir = served
    people = httpx.Client(base_url=server.url, timeout=10.0,
                          headers={"Authorization": f"Bearer {server.token}"})
    applied = people.post(f"{V1}/apply", content=documents(site("a"), site("b")),
                          headers={"Content-Type": "application/yaml"})
    assert applied.status_code == 200, applied.text
    cert_a, key_a = _enrol(server, url, ca_dir, "a", tmp_path)

    with _agent_client(url, ca_dir, cert_a, key_a) as agent_a:
        status = {"status": {"agentVersion": "0.1.0", "workloads": []}}
        written = agent_a.put(f"{V1}/sites/a/status", json=status)
        assert written.status_code == 200, written.text
        # The identity came from the TLS peer certificate: site a, nothing else.
        assert agent_a.put(f"{V1}/sites/b/status", json=status).status_code == 403
        assert agent_a.get(f"{V1}/sitedesiredstates/b").status_code == 403
        assert agent_a.get(f"{V1}/sites").status_code == 403
    with _agent_client(url, ca_dir) as anonymous:
        assert anonymous.get(f"{V1}/sitedesiredstates/a").status_code == 401
    # A certificate from another CA fails the handshake, or is refused right after it (TLS 1.3).
    from fleetplane.security import CertificateAuthority
    from fleetplane.security.ca import certificate_pem

    stranger_ca = CertificateAuthority.create("acme")
    key = generate_private_key()
    forged = stranger_ca.issue_agent_certificate(
        build_csr(key, SpiffeId("acme", "a", "x")), site="a", agent_id="x"
    )
    (tmp_path / "forged.crt").write_bytes(certificate_pem(forged))
    (tmp_path / "forged.key").write_bytes(private_key_pem(key))
    with pytest.raises((httpx.HTTPError, ssl.SSLError)), _agent_client(
        url, ca_dir, tmp_path / "forged.crt", tmp_path / "forged.key"
    ) as forger:
        forger.get(f"{V1}/sitedesiredstates/a").raise_for_status()

    assert people.get(f"{V1}/sites/a").json()["status"]["reachability"] == "Reachable"
    for command, cordoned, draining in (("cordon", True, None), ("drain", True, True),
                                        ("uncordon", False, False)):
        done = _site_cli(server, command, "b")
        assert done.exit_code == 0, done.output
        spec = people.get(f"{V1}/sites/b").json()["spec"]
        assert (spec.get("cordoned"), spec.get("draining")) == (cordoned, draining)
    declared = _site_cli(server, "lost", "b", "-o", "json")
    assert declared.exit_code == 0, declared.output
    assert people.get(f"{V1}/sites/b").json()["status"]["reachability"] == "Lost"
    missing = _site_cli(server, "cordon", "nowhere")
    assert missing.exit_code == 1 and "404" in missing.output
    people.close()


def test_one_leader_and_the_other_takes_over_after_kill_9(
    postgres_database: str, tmp_path: Path
) -> None:
    from control_harness import create_schema

    database = create_schema(postgres_database)
    # Generous for a loaded machine: a holder must renew (every TTL/3) before it expires.
    ttl = "6"
    first = start_server(database, tmp_path, "--lease-ttl", ttl)
    second = None
    try:
        second = start_server(database, tmp_path, "--lease-ttl", ttl)
        servers = [first, second]
        wait_for(lambda: sum(_leader(s) for s in servers) == 1, 60, "exactly one leader")
        # Several renewals later, still exactly one.
        seen = {_readyz(s)["controllers"]["holder"] for s in servers}  # type: ignore[index]
        assert len(seen) == 2
        leader = next(s for s in servers if _leader(s))
        standby = second if leader is first else first
        assert not _leader(standby)
        killed_at = time.monotonic()
        leader.process.send_signal(signal.SIGKILL)
        leader.process.wait(10)
        wait_for(lambda: _leader(standby), 60, "the standby to take the lease over")
        # Reported, not asserted (no timing assertions): the lease TTL bounds it.
        print(f"takeover after {time.monotonic() - killed_at:.1f} s with a {ttl} s lease")
        # The lease row agrees: the survivor holds it now.
        holder = _readyz(standby)["controllers"]["holder"]  # type: ignore[index]
        assert _lease_holder(database) == holder
    finally:
        first.stop()
        if second is not None:
            second.stop()


def _lease_holder(database_url: str) -> str:
    from sqlalchemy import create_engine, select

    from fleetplane.control.controllers.tables import LeaseRow

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(select(LeaseRow.holder)).scalar_one())
    finally:
        engine.dispose()
