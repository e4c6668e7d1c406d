"""A real ``fleetplane serve`` process with its agent port, and agents that talk to it over TLS.

Agents enrol through the port like real ones (bootstrap token from the human
API, a CSR, the certificate the server's CA issues) and then present that
certificate in real TLS handshakes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from control_harness import ServerProcess, free_port, running_server

from fleetplane.security import SpiffeId, build_csr, generate_private_key
from fleetplane.security.keys import private_key_pem
from fleetplane.security.tls import client_context

V1 = "/apis/fleetplane/v1"
FLEET = "acme"


@dataclass(frozen=True)
class Enrolled:
    cert_file: Path
    key_file: Path
    token: str
    renewal_credential: str


def csr_for(site: str, agent_id: str = "a1") -> tuple[str, bytes]:
    """A CSR for ``site``'s agent and the PEM of its private key."""
    key = generate_private_key()
    return build_csr(key, SpiffeId(FLEET, site, agent_id)).decode("ascii"), private_key_pem(key)


@dataclass
class ServedFleet:
    server: ServerProcess
    agent_url: str
    ca_dir: Path
    workdir: Path

    def people(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=10.0,
                            headers={"Authorization": f"Bearer {self.server.token}"})

    def agent(self, cert: Path | None = None, key: Path | None = None) -> httpx.Client:
        """A client of the agent port: with a client certificate, or anonymous."""
        context = client_context((self.ca_dir / "ca.crt").read_bytes(), cert_file=cert,
                                 key_file=key)
        return httpx.Client(base_url=self.agent_url, verify=context, timeout=10.0)

    def bootstrap_token(self, site: str) -> str:
        with self.people() as people:
            answer = people.post(f"{V1}/sites/{site}/bootstrap-tokens", params={"ttl": "5m"})
        assert answer.status_code in (200, 201), answer.text
        token: str = answer.json()["token"]
        return token

    def save(self, name: str, answer: dict[str, Any], key_pem: bytes) -> tuple[Path, Path]:
        cert_file, key_file = self.workdir / f"{name}.crt", self.workdir / f"{name}.key"
        cert_file.write_text(answer["certificate"])
        key_file.write_bytes(key_pem)
        return cert_file, key_file

    def enrol(self, site: str, agent_id: str = "a1") -> Enrolled:
        token = self.bootstrap_token(site)
        csr, key_pem = csr_for(site, agent_id)
        with self.agent() as anonymous:
            answer = anonymous.post("/agent/v1/enrol",
                                    json={"token": token, "csr": csr, "agentId": agent_id})
        assert answer.status_code == 200, answer.text
        cert_file, key_file = self.save(f"{site}-{agent_id}", answer.json(), key_pem)
        return Enrolled(cert_file, key_file, token, answer.json()["renewalCredential"])


@contextmanager
def served_fleet(database_url: str, workdir: Path, *extra: str) -> Iterator[ServedFleet]:
    """``fleetplane serve`` with an agent port and a fresh fleet CA in ``workdir``."""
    agent_port = free_port()
    with running_server(
        database_url, workdir,
        "--agent-listen", f"127.0.0.1:{agent_port}",
        "--ca-dir", str(workdir / "ca"),
        "--fleet", FLEET,
        *extra,
    ) as server:
        yield ServedFleet(server, f"https://127.0.0.1:{agent_port}", workdir / "ca", workdir)
