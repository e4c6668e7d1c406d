"""Controllers react to changes applied through the API (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from controlled_api import make_controlled_api
from fleet_docs import documents, site, wait_for, workload

from fleetplane.control.controllers import ControllerSettings


@pytest.fixture
def api(database_url: str) -> Iterator[Any]:
    yield from make_controlled_api(database_url, ControllerSettings(debounce=0.05))


def _placement(api: Any) -> dict[str, Any] | None:
    answer = api.request("GET", "/apis/fleetplane/v1/placements/fleet")
    return answer.json() if answer.status_code == 200 else None


def _desired(api: Any, name: str) -> dict[str, Any] | None:
    answer = api.request("GET", f"/apis/fleetplane/v1/sitedesiredstates/{name}")
    return answer.json() if answer.status_code == 200 else None


def _apply(api: Any, text: str) -> None:
    answer = api.request(
        "POST", "/apis/fleetplane/v1/apply", content=text,
        headers={"Content-Type": "application/yaml"},
    )
    assert answer.status_code == 200, answer.text


def _sites_of(placement: dict[str, Any], name: str) -> list[str]:
    for placed in placement["spec"]["workloads"]:
        if placed["workload"] == name:
            return [a["site"] for a in placed["assignments"]]
    return []


def test_apply_yields_placement_and_desired_states_then_a_diff(api: Any) -> None:
    _apply(api, documents(site("a"), site("b"), workload("web")))
    placement = wait_for(lambda: _placement(api), what="a Placement")
    assert _sites_of(placement, "web") == ["a"]
    state_a = wait_for(lambda: _desired(api, "a"), what="SiteDesiredState a")
    assert [w["workload"] for w in state_a["spec"]["workloads"]] == ["web"]
    assert wait_for(lambda: _desired(api, "b"))["spec"]["workloads"] == []

    _apply(api, documents(workload("web", cpu=2), workload("batch2")))
    newer = wait_for(
        lambda: (p := _placement(api)) and p["metadata"]["generation"] > 1 and p,
        what="a second Placement generation",
    )
    diff = newer["status"]["diff"]
    assert [item["workload"] for item in diff["added"]] == ["batch2"]
    assert diff["costDelta"] == pytest.approx(2.0)  # web 1 → 2 cpu, batch2 adds 1
    assert diff["previousGeneration"] == 1
    revised = wait_for(lambda: (s := _desired(api, "a")) and s["spec"]["revision"] > 1 and s)
    assert revised["spec"]["revision"] == state_a["spec"]["revision"] + 1
    # b's content did not change: no new revision for it.
    assert _desired(api, "b")["spec"]["revision"] == 1


def test_unreachable_site_keeps_its_workloads_until_declared_lost(api: Any) -> None:
    _apply(api, documents(site("a"), site("b"), workload("web")))
    wait_for(lambda: (p := _placement(api)) and _sites_of(p, "web") == ["a"])
    # The agent of a was heard from long ago: the reachability controller marks it.
    stale = {"heartbeat": "2020-01-01T00:00:00Z", "reachability": "Reachable"}
    api.write_site_status("a", stale)
    wait_for(lambda: api.site_status("a").get("reachability") == "Unreachable")
    # A change that makes the controller re-plan: web must stay on the silent site.
    _apply(api, documents(workload("other")))
    replanned = wait_for(
        lambda: (p := _placement(api)) and any(
            w["workload"] == "other" for w in p["spec"]["workloads"]
        ) and p
    )
    assert _sites_of(replanned, "web") == ["a"]
    assert _sites_of(replanned, "other") == ["b"]  # nothing new goes to an unreachable site
    assert "web" in replanned["status"]["keptOnUnreachableSites"]

    lost = api.request("POST", "/apis/fleetplane/v1/sites/a/lost", role="operator")
    assert lost.status_code == 200, lost.text
    moved = wait_for(lambda: (p := _placement(api)) and _sites_of(p, "web") == ["b"] and p)
    assert moved["status"]["diff"]["moved"][0]["workload"] == "web"
    assert wait_for(lambda: (s := _desired(api, "a")) and s["spec"]["workloads"] == [] and s)


def test_cordon_and_drain(api: Any) -> None:
    _apply(api, documents(site("a"), site("b"), workload("web")))
    wait_for(lambda: (p := _placement(api)) and _sites_of(p, "web") == ["a"])
    sites = "/apis/fleetplane/v1/sites"
    assert api.request("POST", f"{sites}/a/cordon", role="viewer").status_code == 403
    assert api.request("POST", f"{sites}/a/drain", role="operator").status_code == 200
    wait_for(lambda: (p := _placement(api)) and _sites_of(p, "web") == ["b"])
    assert api.request("POST", "/apis/fleetplane/v1/sites/a/uncordon").status_code == 200
    site_a = api.request("GET", "/apis/fleetplane/v1/sites/a").json()
    assert site_a["spec"]["cordoned"] is False and site_a["spec"]["draining"] is False
