"""The agent port of a real ``fleetplane serve`` over real TLS: enrolment, rotation,
re-enrolment and the per-site route matrix (the in-process twins are in test_agent_port.py).

Every request here is a real TLS handshake against the server process: the
identity comes from the client certificate the server's own CA issued.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fleet_docs import documents, site, wait_for, workload
from serve_harness import V1, ServedFleet, csr_for, served_fleet

STATUS = {"status": {"agentVersion": "0.1.0", "workloads": []}}
NEW_SITE = {"apiVersion": "fleetplane/v1", "kind": "Site", "metadata": {"name": "c"},
            "spec": {"tier": "edge", "nodePools": []}}


@pytest.fixture
def fleet(database_url: str, tmp_path: Path) -> Iterator[ServedFleet]:
    with served_fleet(database_url, tmp_path) as served:
        with served.people() as people:
            applied = people.post(f"{V1}/apply",
                                  content=documents(site("a"), site("b"), workload("web")),
                                  headers={"Content-Type": "application/yaml"})
            assert applied.status_code == 200, applied.text
            wait_for(lambda: people.get(f"{V1}/sitedesiredstates/b").status_code == 200,
                     60, "desired states derived")
        yield served


def test_enrolment_rotation_and_reenrolment_over_tls(fleet: ServedFleet) -> None:
    enrolled = fleet.enrol("a")
    # The bootstrap token is one-time.
    csr, _ = csr_for("a", "a2")
    with fleet.agent() as anonymous:
        again = anonymous.post("/agent/v1/enrol",
                               json={"token": enrolled.token, "csr": csr, "agentId": "a2"})
        assert again.status_code == 401 and "used" in again.text
        # Rotation needs the current certificate in the handshake.
        csr, _ = csr_for("a")
        assert anonymous.post("/agent/v1/certificate", json={"csr": csr}).status_code == 401

    csr, key_pem = csr_for("a")
    with fleet.agent(enrolled.cert_file, enrolled.key_file) as agent:
        rotated = agent.post("/agent/v1/certificate", json={"csr": csr})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["site"] == "a"
    cert, key = fleet.save("a-rotated", rotated.json(), key_pem)
    with fleet.agent(cert, key) as agent:
        assert agent.put(f"{V1}/sites/a/status", json=STATUS).status_code == 200
        assert agent.put(f"{V1}/sites/b/status", json=STATUS).status_code == 403

    # An agent whose certificate lapsed comes back with its renewal credential alone.
    csr, key_pem = csr_for("a")
    body = {"renewalCredential": enrolled.renewal_credential, "csr": csr}
    with fleet.agent() as anonymous:
        renewed = anonymous.post("/agent/v1/reenrol", json=body)
        assert renewed.status_code == 200, renewed.text
        # Each re-enrolment revokes the credential it used.
        replay = anonymous.post("/agent/v1/reenrol", json=body)
        assert replay.status_code == 401, replay.text
    cert, key = fleet.save("a-renewed", renewed.json(), key_pem)
    with fleet.agent(cert, key) as agent:
        assert agent.get(f"{V1}/sitedesiredstates/a").status_code == 200
    # The renewed credential works once in turn.
    csr, _ = csr_for("a")
    with fleet.agent() as anonymous:
        onward = anonymous.post("/agent/v1/reenrol", json={
            "renewalCredential": renewed.json()["renewalCredential"], "csr": csr})
    assert onward.status_code == 200, onward.text


def _watch_status(client: httpx.Client, path: str) -> int:
    with client.stream("GET", path, params={"watch": "true"}) as response:
        return response.status_code


def test_a_certificate_of_site_a_reaches_only_site_a_over_tls(fleet: ServedFleet) -> None:
    enrolled = fleet.enrol("a")
    with fleet.agent(enrolled.cert_file, enrolled.key_file) as agent:
        assert agent.get("/healthz").status_code == 200
        assert agent.get(f"{V1}/sitedesiredstates/a").status_code == 200
        history = agent.get(f"{V1}/sitedesiredstates/a", params={"sinceRevision": 0})
        assert history.status_code == 200 and history.json()["items"], history.text
        assert _watch_status(agent, f"{V1}/sitedesiredstates/a") == 200
        assert agent.put(f"{V1}/sites/a/status", json=STATUS).status_code == 200
        forbidden = [
            ("GET", f"{V1}/sitedesiredstates/b", None),
            ("GET", f"{V1}/sitedesiredstates/b?sinceRevision=0", None),
            ("PUT", f"{V1}/sites/b/status", STATUS),
            ("PATCH", f"{V1}/sites/b/status", STATUS),
            ("GET", f"{V1}/sites/b", None),
            ("GET", f"{V1}/sites", None),
            ("POST", f"{V1}/sites", NEW_SITE),
            ("GET", f"{V1}/workloads", None),
            ("GET", f"{V1}/placements/fleet", None),
            ("PUT", f"{V1}/sites/a", None),
            ("PATCH", f"{V1}/sites/a", None),
            ("DELETE", f"{V1}/sites/b", None),
            ("GET", f"{V1}/secrets/db", None),
        ]
        for method, path, body in forbidden:
            answer = agent.request(method, path, json=body)
            assert answer.status_code == 403, (method, path, answer.status_code, answer.text)
        assert _watch_status(agent, f"{V1}/sitedesiredstates/b") == 403
        refused = agent.put(f"{V1}/sites/a/status", json={"status": {"agentVersion": "99.0.0"}})
        assert refused.status_code == 426 and "upgrade" in refused.text

    # Without a certificate only enrolment and health are open.
    with fleet.agent() as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        for method, path, body in [
            ("GET", f"{V1}/sitedesiredstates/a", None),
            ("GET", f"{V1}/sitedesiredstates/a?sinceRevision=0", None),
            ("PUT", f"{V1}/sites/a/status", STATUS),
            ("POST", "/agent/v1/telemetry", {}),
            ("GET", f"{V1}/sites", None),
            ("GET", f"{V1}/secrets/db", None),
        ]:
            answer = anonymous.request(method, path, json=body)
            assert answer.status_code == 401, (method, path, answer.status_code, answer.text)
        assert _watch_status(anonymous, f"{V1}/sitedesiredstates/a") == 401
    with fleet.people() as people:
        assert people.get(f"{V1}/sites/a").json()["status"]["reachability"] == "Reachable"
