"""A Workload applied before its artifact is pushed is delivered once it is (SQLite, PostgreSQL).

The push reaches the placement controller through the event log like any
other change; it only derives again (no new plan), and only sites whose
desired state changes get a new revision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from controlled_api import make_controlled_api
from fleet_docs import documents, site, wait_for, workload

from fleetplane.control.controllers import ControllerSettings

V1 = "/apis/fleetplane/v1"
ARTIFACTS = "/api/v1/artifacts"


@pytest.fixture
def api(database_url: str) -> Iterator[Any]:
    yield from make_controlled_api(database_url, ControllerSettings(debounce=0.05))


def _get(api: Any, path: str) -> dict[str, Any] | None:
    answer = api.request("GET", path)
    return answer.json() if answer.status_code == 200 else None


def _apply(api: Any, text: str) -> None:
    answer = api.request("POST", f"{V1}/apply", content=text,
                         headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 200, answer.text


def _with_artifact(name: str, artifact: str, version: str) -> str:
    return workload(name) + f'  artifact: {{name: {artifact}, version: "{version}"}}\n'


def _push(api: Any, name: str, version: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    begun = api.request("POST", f"{ARTIFACTS}/uploads")
    assert begun.status_code == 201, begun.text
    upload_id = begun.json()["uploadId"]
    part = api.request("PUT", f"{ARTIFACTS}/uploads/{upload_id}/parts/0", content=data)
    assert part.status_code == 200, part.text
    pushed = api.request("POST", ARTIFACTS, json={
        "name": name, "version": version, "digest": digest, "uploadId": upload_id})
    assert pushed.status_code == 201, pushed.text
    return digest


def _artifacts_of(state: dict[str, Any] | None, workload_name: str) -> list[dict[str, Any]]:
    for item in (state or {}).get("spec", {}).get("workloads", []):
        if item["workload"] == workload_name:
            return list(item.get("artifacts", []))
    return []


def test_push_after_apply_delivers_the_waiting_workload(api: Any) -> None:
    _apply(api, documents(site("a"), _with_artifact("web", "digits", "1.0")))
    placement = wait_for(
        lambda: (p := _get(api, f"{V1}/placements/fleet"))
        and (p.get("status") or {}).get("missingArtifacts") and p,
        what="a Placement naming the missing artifact",
    )
    [missing] = placement["status"]["missingArtifacts"]
    assert missing["workload"] == "web" and missing["artifact"] == "digits:1.0"
    assert "fleetplane artifact push" in missing["message"]
    [condition] = placement["status"]["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "ArtifactsResolved", "False", "ArtifactMissing")
    assert "digits:1.0" in condition["message"]
    waiting = wait_for(lambda: _get(api, f"{V1}/sitedesiredstates/a"), what="site a's state")
    assert waiting["spec"]["workloads"] == []

    digest = _push(api, "digits", "1.0", b"weights")
    delivered = wait_for(
        lambda: (s := _get(api, f"{V1}/sitedesiredstates/a")) and _artifacts_of(s, "web") and s,
        what="site a's desired state with the pushed artifact",
    )
    assert _artifacts_of(delivered, "web") == [
        {"name": "digits", "digest": digest, "size": len(b"weights")}]
    assert delivered["spec"]["revision"] == waiting["spec"]["revision"] + 1
    resolved = wait_for(
        lambda: (p := _get(api, f"{V1}/placements/fleet"))
        and p["status"]["missingArtifacts"] == [] and p,
        what="the Placement without missing artifacts",
    )
    assert resolved["status"]["conditions"][0]["status"] == "True"
    # Only derived again: the plan itself did not change.
    assert resolved["metadata"]["generation"] == placement["metadata"]["generation"]


def test_only_sites_whose_desired_state_changes_get_a_new_revision(api: Any) -> None:
    _apply(api, documents(site("a"), site("b"), _with_artifact("web", "digits", "1.0")))
    placement = wait_for(lambda: (p := _get(api, f"{V1}/placements/fleet"))
                         and p["spec"]["workloads"] and p, what="a Placement")
    [placed] = [a["site"] for a in placement["spec"]["workloads"][0]["assignments"]]
    [other] = [name for name in "ab" if name != placed]
    before = {name: wait_for(lambda n=name: _get(api, f"{V1}/sitedesiredstates/{n}"))
              for name in "ab"}
    # An artifact no workload names first: the feed lets it pass. Then the
    # awaited name+version as a record of that stored blob (no upload): it counts.
    digest = _push(api, "unused", "1", b"weights")
    recorded = api.request("POST", ARTIFACTS, json={
        "name": "digits", "version": "1.0", "digest": digest})
    assert recorded.status_code == 201, recorded.text
    delivered = wait_for(
        lambda: (s := _get(api, f"{V1}/sitedesiredstates/{placed}"))
        and _artifacts_of(s, "web") and s,
        what=f"site {placed}'s desired state with the artifact",
    )
    assert _artifacts_of(delivered, "web")[0]["digest"] == digest
    assert delivered["spec"]["revision"] == before[placed]["spec"]["revision"] + 1
    unchanged = _get(api, f"{V1}/sitedesiredstates/{other}")
    assert unchanged is not None
    assert unchanged["spec"]["revision"] == before[other]["spec"]["revision"]
    assert unchanged["metadata"]["resourceVersion"] == before[other]["metadata"]["resourceVersion"]


def test_a_release_a_workload_runs_cannot_be_deleted_until_it_moves_on(api: Any) -> None:
    first = _push(api, "digits", "1.0", b"weights-1")
    _apply(api, documents(site("a"), _with_artifact("web", "digits", "1.0")))
    wait_for(lambda: (s := _get(api, f"{V1}/sitedesiredstates/a")) and _artifacts_of(s, "web"),
             what="site a running digits:1.0")
    refused = api.request("DELETE", f"{ARTIFACTS}/digits/1.0")
    assert refused.status_code == 409 and "Workload web" in refused.json()["message"]
    assert api.request("HEAD", f"{ARTIFACTS}/blobs/{first}").status_code == 200

    second = _push(api, "digits", "2.0", b"weights-2")
    _apply(api, documents(site("a"), _with_artifact("web", "digits", "2.0")))
    wait_for(
        lambda: (s := _get(api, f"{V1}/sitedesiredstates/a"))
        and [r["digest"] for r in _artifacts_of(s, "web")] == [second],
        what="site a moved to digits:2.0",
    )
    deleted = api.request("DELETE", f"{ARTIFACTS}/digits/1.0")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["blobsRemoved"] == [first]
    assert api.request("HEAD", f"{ARTIFACTS}/blobs/{first}").status_code == 404
