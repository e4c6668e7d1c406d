"""A site's desired-state history: the last 100 revisions are served in order, older ones 410."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient
from sqlalchemy import delete
from test_agent_port import WithCertificate

from fleetplane.control.agent_api.app import create_agent_app
from fleetplane.control.controllers.tables import SiteRevisionRow
from fleetplane.control.controllers.transactions import write_site_states
from fleetplane.control.plane import ControlPlane
from fleetplane.control.settings import Settings
from fleetplane.control.store.database import write_transaction
from fleetplane.security import CertificateAuthority, SpiffeId, build_csr, generate_private_key

KEPT = 100


@pytest.fixture
def agent_of_a(database_url: str) -> Iterator[tuple[TestClient, ControlPlane]]:
    plane = ControlPlane.open(Settings(database_url=database_url))
    ca = CertificateAuthority.create("acme")
    wrapper = WithCertificate(create_agent_app(plane, ca))
    key = generate_private_key()
    certificate = ca.issue_agent_certificate(
        build_csr(key, SpiffeId("acme", "a", "a1")), site="a", agent_id="a1"
    )
    wrapper.der = certificate.public_bytes(Encoding.DER)
    with TestClient(wrapper) as client:
        yield client, plane
    plane.close()


def _revise(plane: ControlPlane, times: int) -> None:
    for number in range(times):
        workloads: list[dict[str, Any]] = [{"workload": "web", "replicas": number + 1}]
        write_site_states(plane.store, {"a": {"workloads": workloads}}, actor="t", keep=KEPT)


def test_past_the_kept_history_an_old_revision_is_gone_and_the_rest_come_in_order(
    agent_of_a: Any,
) -> None:
    client, plane = agent_of_a
    _revise(plane, KEPT + 5)
    latest = client.get("/apis/fleetplane/v1/sitedesiredstates/a").json()
    assert latest["spec"]["revision"] == KEPT + 5

    gone = client.get("/apis/fleetplane/v1/sitedesiredstates/a?sinceRevision=1")
    assert gone.status_code == 410, gone.text
    assert gone.json()["reason"] == "Expired" and "latest" in gone.json()["message"]

    # Revision 6 is the oldest kept: an agent at 5 still gets every one it missed.
    missed = client.get("/apis/fleetplane/v1/sitedesiredstates/a?sinceRevision=5")
    assert missed.status_code == 200, missed.text
    revisions = [item["spec"]["revision"] for item in missed.json()["items"]]
    assert revisions == list(range(6, KEPT + 6))
    assert client.get(
        "/apis/fleetplane/v1/sitedesiredstates/a?sinceRevision=4"
    ).status_code == 410


def _forget_history(plane: ControlPlane) -> None:
    """What restoring a store without its revision rows leaves: the current state only."""
    with write_transaction(plane.store.engine) as connection:
        connection.execute(delete(SiteRevisionRow))


def _watch_first_event(client: TestClient, since: int) -> dict[str, Any]:
    url = f"/apis/fleetplane/v1/sitedesiredstates/a?watch=true&sinceRevision={since}"
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.strip():
                event: dict[str, Any] = json.loads(line)
                return event
    raise AssertionError("the watch ended without an event")


def test_without_revision_rows_an_agent_behind_is_told_to_take_the_latest(
    agent_of_a: Any,
) -> None:
    client, plane = agent_of_a
    _revise(plane, 3)
    _forget_history(plane)

    gone = client.get("/apis/fleetplane/v1/sitedesiredstates/a?sinceRevision=1")
    assert gone.status_code == 410, gone.text
    assert gone.json()["reason"] == "Expired" and "latest" in gone.json()["message"]
    event = _watch_first_event(client, 1)
    assert event["type"] == "ERROR" and event["object"]["code"] == 410, event
    # An agent already at the latest has nothing to replay: no error.
    current = client.get("/apis/fleetplane/v1/sitedesiredstates/a?sinceRevision=3")
    assert current.status_code == 200 and current.json()["items"] == []
    # And the next revision reaches it normally.
    _revise(plane, 1)
    after = client.get("/apis/fleetplane/v1/sitedesiredstates/a?sinceRevision=3").json()
    assert [item["spec"]["revision"] for item in after["items"]] == [4]


def test_an_agent_ahead_of_a_restored_store_is_told_to_take_the_latest(agent_of_a: Any) -> None:
    client, plane = agent_of_a
    _revise(plane, 2)
    ahead = client.get("/apis/fleetplane/v1/sitedesiredstates/a?sinceRevision=7")
    assert ahead.status_code == 410, ahead.text
    assert "newer than the latest (2)" in ahead.json()["message"]
