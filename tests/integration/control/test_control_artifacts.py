"""Artifacts on the control plane: push in parts, verify, record, audit; roles; the CLI.

The API tests run on SQLite and PostgreSQL (in-process app); the CLI test
pushes through a real ``fleetplane serve`` process over real HTTP.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from api_harness import Api
from control_harness import running_server

from fleetplane.artifacts.archive import pack
from fleetplane.control.store import artifacts as store

API = "/api/v1/artifacts"


def _release(directory: Path, payload: bytes) -> tuple[bytes, list[dict[str, Any]]]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.bin").write_bytes(payload)
    (directory / "bin").mkdir(exist_ok=True)
    (directory / "bin" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (directory / "bin" / "run.sh").chmod(0o755)
    out = io.BytesIO()
    files = pack(directory, out)
    return out.getvalue(), [entry.to_json() for entry in files]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _upload(api: Api, data: bytes, role: str = "operator") -> str:
    begun = api.request("POST", f"{API}/uploads", role=role)
    assert begun.status_code == 201, begun.text
    upload_id: str = begun.json()["uploadId"]
    part = begun.json()["partBytes"]
    for seq, start in enumerate(range(0, len(data), part)):
        sent = api.request("PUT", f"{API}/uploads/{upload_id}/parts/{seq}", role=role,
                           content=data[start:start + part])
        assert sent.status_code == 200, sent.text
    return upload_id


def test_push_in_parts_then_list_get_and_audit(api: Api, tmp_path: Path) -> None:
    # Over two parts (1 MiB each), so reassembly in order is exercised.
    payload = os.urandom(store.CHUNK_BYTES + 12345)
    archive, files = _release(tmp_path / "r1", payload)
    assert len(archive) > store.CHUNK_BYTES
    digest = _digest(archive)
    upload_id = _upload(api, archive)
    assert api.request("HEAD", f"{API}/blobs/{digest}").status_code == 404

    body = {"name": "digits", "version": "1.0.0", "digest": digest, "uploadId": upload_id,
            "files": files}
    pushed = api.request("POST", API, role="operator", json=body)
    assert pushed.status_code == 201, pushed.text
    assert pushed.json()["size"] == len(archive)
    assert api.request("HEAD", f"{API}/blobs/{digest}").status_code == 200

    # Pushing the same name+version and digest again is a no-op (200, nothing new).
    again = api.request("POST", API, role="operator", json={**body, "uploadId": None})
    assert again.status_code == 200, again.text
    # The same version with other bytes is refused: versions are immutable.
    other = _digest(b"other")
    conflict = api.request("POST", API, role="operator", json={**body, "digest": other,
                                                              "uploadId": None})
    assert conflict.status_code == 409 and "immutable" in conflict.json()["message"]

    # A second version with the same bytes shares the blob: no upload needed.
    shared = api.request("POST", API, role="operator",
                         json={"name": "digits", "version": "1.0.1", "digest": digest})
    assert shared.status_code == 201, shared.text

    listed = api.request("GET", API, role="viewer", params={"name": "digits"})
    assert listed.status_code == 200
    assert [(i["version"], i["digest"]) for i in listed.json()["items"]] == [
        ("1.0.0", digest), ("1.0.1", digest)]
    got = api.request("GET", f"{API}/digits/1.0.0", role="viewer").json()
    assert {f["path"] for f in got["files"]} == {"bin/run.sh", "model.bin"}
    assert next(f for f in got["files"] if f["path"] == "bin/run.sh")["executable"] is True
    assert next(f for f in got["files"] if f["path"] == "model.bin")["sha256"] == _digest(payload)
    assert api.request("GET", f"{API}/digits/9.9", role="viewer").status_code == 404

    audit = api.request("GET", "/api/v1/audit").json()["items"]
    pushes = [e for e in audit if e["action"] == "artifact.push"]
    assert [(e["name"], e["after_digest"], e["actor"]) for e in pushes] == [
        ("digits:1.0.0", digest, "operator-user"), ("digits:1.0.1", digest, "operator-user")]
    assert api.request("GET", "/api/v1/audit/verify").json()["ok"] is True


def test_bytes_that_do_not_match_the_announced_digest_are_refused(api: Api,
                                                                  tmp_path: Path) -> None:
    archive, files = _release(tmp_path / "r", b"weights")
    upload_id = _upload(api, archive)
    wrong = _digest(archive + b"!")
    refused = api.request("POST", API, role="operator", json={
        "name": "bad", "version": "1", "digest": wrong, "uploadId": upload_id, "files": files})
    assert refused.status_code == 422, refused.text
    assert _digest(archive) in refused.json()["message"]
    assert api.request("GET", API, role="viewer").json()["items"] == []
    assert api.request("HEAD", f"{API}/blobs/{wrong}").status_code == 404
    # Without an upload, a digest the server does not hold cannot be recorded.
    missing = api.request("POST", API, role="operator",
                          json={"name": "bad", "version": "1", "digest": wrong})
    assert missing.status_code == 404 and "upload its bytes" in missing.json()["message"]
    gaps = _upload(api, b"x")
    holey = api.request("PUT", f"{API}/uploads/{gaps}/parts/2", role="operator", content=b"z")
    assert holey.status_code == 200
    incomplete = api.request("POST", API, role="operator", json={
        "name": "bad", "version": "2", "digest": _digest(b"x"), "uploadId": gaps})
    assert incomplete.status_code == 400 and "[1]" in incomplete.json()["message"]


def test_only_operators_and_admins_push_and_names_are_checked(api: Api) -> None:
    assert api.request("POST", f"{API}/uploads", role="viewer").status_code == 403
    denied = api.request("POST", API, role="viewer",
                         json={"name": "x", "version": "1", "digest": _digest(b"")})
    assert denied.status_code == 403
    assert api.request("POST", f"{API}/uploads", role="admin").status_code == 201
    assert api.client.get(API).status_code == 401
    bad_name = api.request("POST", API, role="operator",
                           json={"name": "Not OK", "version": "1", "digest": _digest(b"")})
    assert bad_name.status_code == 400 and "artifact name" in bad_name.json()["message"]
    bad_digest = api.request("POST", API, role="operator",
                             json={"name": "ok", "version": "1", "digest": "md5:abc"})
    assert bad_digest.status_code == 400
    too_big = api.request("PUT", f"{API}/uploads/{'0' * 32}/parts/0", role="operator",
                          content=b"x" * (store.CHUNK_BYTES + 1))
    assert too_big.status_code == 413


def _cli(server_url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEETPLANE_SERVER": server_url, "FLEETPLANE_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-c", "from fleetplane.cli.main import run; run()", "artifact", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False)


def test_cli_push_is_deterministic_and_prints_the_digest(tmp_path: Path) -> None:
    release = tmp_path / "release"
    archive, _ = _release(release, os.urandom(3 * store.CHUNK_BYTES // 2))
    with running_server(f"sqlite:///{tmp_path / 'store.db'}", tmp_path) as server:
        first = _cli(server.url, server.token, "push", str(release), "--name", "digits",
                     "--version", "1")
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == _digest(archive)
        # Same directory, new version: same bytes, same digest, no second upload.
        second = _cli(server.url, server.token, "push", str(release), "--name", "digits",
                      "--version", "2")
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == _digest(archive) and "already stored" in second.stderr
        listed = _cli(server.url, server.token, "list", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        assert '"version": "2"' in listed.stdout
        shown = _cli(server.url, server.token, "get", "digits", "1")
        assert shown.returncode == 0 and "model.bin" in shown.stdout
        other = tmp_path / "other"
        other.mkdir()
        (other / "model.bin").write_bytes(b"different")
        taken = _cli(server.url, server.token, "push", str(other), "--name", "digits",
                     "--version", "1")
        assert taken.returncode == 1 and "immutable" in taken.stderr
        unknown = _cli(server.url, server.token, "get", "digits", "7")
        assert unknown.returncode == 1 and "never pushed" in unknown.stderr
        # Versions 1 and 2 share the bytes: deleting 1 keeps them, deleting 2 frees them.
        kept = _cli(server.url, server.token, "delete", "digits", "1")
        assert kept.returncode == 0, kept.stderr
        assert kept.stdout.startswith("deleted digits:1: 0 blob(s), 0 bytes freed")
        freed = _cli(server.url, server.token, "delete", "digits", "2", "-o", "json")
        assert freed.returncode == 0, freed.stderr
        assert json.loads(freed.stdout)["blobsRemoved"] == [_digest(archive)]
        gone = _cli(server.url, server.token, "delete", "digits", "2")
        assert gone.returncode == 1 and "does not exist" in gone.stderr
        collected = _cli(server.url, server.token, "gc")
        assert collected.returncode == 0 and collected.stdout.startswith("collected: 0 blob(s)")
