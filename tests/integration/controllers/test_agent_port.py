"""The agent port: enrolment, one-time tokens, rotation, re-enrolment, the per-site matrix.

The app is driven in-process; a wrapper puts the client certificate into
the scope exactly where ``fleetplane.control.mtls`` puts the TLS peer's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from fastapi.testclient import TestClient
from fleet_docs import documents, site, wait_for, workload
from peer_scope import WithCertificate

from fleetplane.control.agent_api.app import create_agent_app
from fleetplane.control.app import create_app
from fleetplane.control.controllers import ControllerSettings, build_controllers
from fleetplane.control.controllers.operations import router as operations_router
from fleetplane.control.controllers.tables import ensure_tables
from fleetplane.control.plane import ControlPlane
from fleetplane.control.settings import Settings
from fleetplane.security import CertificateAuthority, SpiffeId, build_csr, generate_private_key

V1 = "/apis/fleetplane/v1"


@pytest.fixture
def ports(database_url: str) -> Iterator[tuple[TestClient, TestClient, WithCertificate]]:
    from fleet_docs import first_fit

    settings = Settings(database_url=database_url)
    plane = ControlPlane.open(settings)
    ensure_tables(plane.engine)
    tokens: list[str] = []
    human = create_app(
        settings, plane=plane, announce=tokens.append,
        controllers=build_controllers(ControllerSettings(debounce=0.05), planner=first_fit),
    )
    human.include_router(operations_router)
    agent = WithCertificate(create_agent_app(plane, CertificateAuthority.create("acme")))
    with TestClient(human) as people, TestClient(agent) as agents:
        people.headers["Authorization"] = f"Bearer {tokens[0]}"
        yield people, agents, agent


def _csr(site_name: str, agent_id: str) -> str:
    key = generate_private_key()
    return build_csr(key, SpiffeId("acme", site_name, agent_id)).decode("ascii")


def _enrol(people: TestClient, agents: TestClient, site_name: str) -> dict[str, Any]:
    token = people.post(f"{V1}/sites/{site_name}/bootstrap-tokens?ttl=15m").json()["token"]
    answer = agents.post(
        "/agent/v1/enrol", json={"token": token, "csr": _csr(site_name, "a1"), "agentId": "a1"}
    )
    assert answer.status_code == 200, answer.text
    return {**answer.json(), "token": token}


def _der(pem: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)


def test_enrol_is_one_time_and_rotation_and_reenrolment_work(ports: Any) -> None:
    people, agents, wrapper = ports
    people.post(f"{V1}/apply", content=documents(site("a")),
                headers={"Content-Type": "application/yaml"})
    enrolled = _enrol(people, agents, "a")
    certificate = x509.load_pem_x509_certificate(enrolled["certificate"].encode())
    uri = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert [str(u.value) for u in uri.value] == ["spiffe://acme/site/a/agent/a1"]
    again = agents.post(
        "/agent/v1/enrol", json={"token": enrolled["token"], "csr": _csr("a", "a2"),
                                 "agentId": "a2"}
    )
    assert again.status_code == 401 and "used" in again.text
    assert agents.post("/agent/v1/certificate", json={"csr": _csr("a", "a1")}).status_code == 401
    wrapper.der = _der(enrolled["certificate"])
    rotated = agents.post("/agent/v1/certificate", json={"csr": _csr("a", "a1")})
    assert rotated.status_code == 200 and rotated.json()["site"] == "a"
    wrapper.der = None
    renewed = agents.post(
        "/agent/v1/reenrol",
        json={"renewalCredential": enrolled["renewalCredential"], "csr": _csr("a", "a1")},
    )
    assert renewed.status_code == 200, renewed.text
    # Every re-enrolment revokes the previous renewal credential.
    replay = agents.post(
        "/agent/v1/reenrol",
        json={"renewalCredential": enrolled["renewalCredential"], "csr": _csr("a", "a1")},
    )
    assert replay.status_code == 401


def test_a_certificate_of_site_a_reaches_only_site_a(ports: Any) -> None:
    people, agents, wrapper = ports
    people.post(f"{V1}/apply", content=documents(site("a"), site("b"), workload("web")),
                headers={"Content-Type": "application/yaml"})
    wait_for(lambda: people.get(f"{V1}/sitedesiredstates/b").status_code == 200)
    wrapper.der = _der(_enrol(people, agents, "a")["certificate"])
    assert agents.get(f"{V1}/sitedesiredstates/a").status_code == 200
    history = agents.get(f"{V1}/sitedesiredstates/a?sinceRevision=0").json()
    assert [item["spec"]["revision"] for item in history["items"]] == [1]
    status = {"status": {"agentVersion": "0.1.0", "workloads": []}}
    assert agents.put(f"{V1}/sites/a/status", json=status).status_code == 200
    forbidden = [
        ("GET", f"{V1}/sitedesiredstates/b", None),
        ("GET", f"{V1}/sitedesiredstates/b?sinceRevision=0", None),
        ("GET", f"{V1}/sitedesiredstates/b?watch=true", None),
        ("PUT", f"{V1}/sites/b/status", status),
        ("GET", f"{V1}/sites/b", None),
        ("GET", f"{V1}/sites", None),
        ("GET", f"{V1}/workloads", None),
        ("GET", f"{V1}/placements/fleet", None),
        ("PUT", f"{V1}/sites/a", None),
        ("DELETE", f"{V1}/sites/b", None),
        ("GET", f"{V1}/secrets/db", None),
    ]
    for method, path, body in forbidden:
        answer = agents.request(method, path, json=body)
        assert answer.status_code == 403, (method, path, answer.status_code, answer.text)
    other_major = {"status": {"agentVersion": "99.0.0"}}
    refused = agents.put(f"{V1}/sites/a/status", json=other_major)
    assert refused.status_code == 426 and "upgrade" in refused.text
    assert people.get(f"{V1}/sites/a").json()["status"]["reachability"] == "Reachable"
