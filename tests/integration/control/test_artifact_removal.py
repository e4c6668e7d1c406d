"""Deleting releases and collecting their bytes (SQLite and PostgreSQL, in-process app).

A record goes only when no Workload runs it; its blob goes only when no
other record and no site's desired state names the digest, and a later
collection frees what was kept for the sites.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from api_harness import Api
from sqlalchemy import func, select, update

from fleetplane.control.store import artifacts as store
from fleetplane.control.store.repository import Desired
from fleetplane.security.canonical import format_timestamp

API = "/api/v1/artifacts"


def _push(api: Api, name: str, version: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    begun = api.request("POST", f"{API}/uploads", role="operator")
    upload_id = begun.json()["uploadId"]
    part = api.request("PUT", f"{API}/uploads/{upload_id}/parts/0", role="operator",
                       content=data)
    assert part.status_code == 200, part.text
    pushed = api.request("POST", API, role="operator", json={
        "name": name, "version": version, "digest": digest, "uploadId": upload_id})
    assert pushed.status_code == 201, pushed.text
    return digest


def _chunks(api: Api, owner: str) -> int:
    with api.plane.engine.connect() as connection:
        return int(connection.execute(
            select(func.count()).select_from(store.CHUNKS).where(store.CHUNKS.c.owner == owner)
        ).scalar_one())


def _site_runs(api: Api, site: str, digest: str) -> None:
    """A site's desired state naming ``digest``, as the desired-state controller writes it."""
    api.plane.store.create(Desired(
        kind="SiteDesiredState", name=site, labels={}, annotations={},
        spec={"site": site, "revision": 1, "workloads": [{
            "workload": "web", "artifacts": [{"name": "digits", "digest": digest, "size": 7}],
        }]},
    ), actor="controller:desired-state")


def test_delete_keeps_bytes_others_name_and_gc_frees_them_later(api: Api) -> None:
    shared = _push(api, "digits", "1.0", b"weights")
    assert api.request("POST", API, role="operator", json={
        "name": "digits", "version": "1.1", "digest": shared}).status_code == 201
    alone = _push(api, "other", "1", b"only-mine")
    _site_runs(api, "store-001", shared)

    assert api.request("DELETE", f"{API}/digits/1.0", role="viewer").status_code == 403
    unknown = api.request("DELETE", f"{API}/digits/9.9", role="operator")
    assert unknown.status_code == 404 and "does not exist" in unknown.json()["message"]

    # digits:1.1 still records the same bytes: only the record goes.
    first = api.request("DELETE", f"{API}/digits/1.0", role="operator")
    assert first.status_code == 200, first.text
    assert first.json()["deleted"]["digest"] == shared
    assert first.json()["blobsRemoved"] == [] and first.json()["blobsKeptForSites"] == []
    assert api.request("GET", f"{API}/digits/1.0").status_code == 404
    # The last record goes, but store-001's desired state still names the bytes.
    second = api.request("DELETE", f"{API}/digits/1.1", role="operator").json()
    assert second["blobsRemoved"] == [] and second["blobsKeptForSites"] == [shared]
    assert api.request("HEAD", f"{API}/blobs/{shared}").status_code == 200
    # Bytes nobody names go with their record, chunks included.
    third = api.request("DELETE", f"{API}/other/1", role="admin").json()
    assert third["blobsRemoved"] == [alone] and third["bytesFreed"] == len(b"only-mine")
    assert api.request("HEAD", f"{API}/blobs/{alone}").status_code == 404
    assert _chunks(api, alone) == 0

    # Nothing is free while the site still runs it; once it moved on, gc frees it.
    assert api.request("POST", f"{API}/gc", role="operator").json()["blobsRemoved"] == []
    assert api.request("POST", f"{API}/gc", role="viewer").status_code == 403
    api.plane.store.delete("SiteDesiredState", "store-001", actor="controller:desired-state")
    collected = api.request("POST", f"{API}/gc", role="operator").json()
    assert collected["blobsRemoved"] == [shared] and collected["bytesFreed"] == len(b"weights")
    assert _chunks(api, shared) == 0

    audit = api.request("GET", "/api/v1/audit").json()["items"]
    removals = [(e["action"], e["name"], e["before_digest"]) for e in audit
                if e["action"] in ("artifact.delete", "artifact.gc")]
    assert removals == [
        ("artifact.delete", "digits:1.0", shared),
        ("artifact.delete", "digits:1.1", shared),
        ("artifact.delete", "other:1", alone),
        ("artifact.gc", "", None),
    ]
    assert api.request("GET", "/api/v1/audit/verify").json()["ok"] is True


def test_gc_drops_abandoned_uploads_and_keeps_fresh_ones(api: Api) -> None:
    old = api.request("POST", f"{API}/uploads", role="operator").json()["uploadId"]
    fresh = api.request("POST", f"{API}/uploads", role="operator").json()["uploadId"]
    for upload_id in (old, fresh):
        sent = api.request("PUT", f"{API}/uploads/{upload_id}/parts/0", role="operator",
                           content=b"part")
        assert sent.status_code == 200
    long_ago = format_timestamp(datetime.now(UTC) - store.UPLOAD_LIFETIME - timedelta(hours=1))
    with api.plane.engine.begin() as connection:
        connection.execute(update(store.UPLOADS).where(store.UPLOADS.c.upload_id == old)
                           .values(created_at=long_ago))
    collected = api.request("POST", f"{API}/gc", role="operator").json()
    assert collected["uploadsDropped"] == 1 and collected["blobsRemoved"] == []
    assert _chunks(api, f"upload:{old}") == 0 and _chunks(api, f"upload:{fresh}") == 1
    # Nothing more to drop: the second collection changes nothing and audits nothing.
    assert api.request("POST", f"{API}/gc", role="operator").json()["uploadsDropped"] == 0
    audit = api.request("GET", "/api/v1/audit").json()["items"]
    assert [e["action"] for e in audit].count("artifact.gc") == 1
