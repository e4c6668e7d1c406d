"""Against real `fleetplane serve` processes on loopback: concurrency, watch, the CLI.

One server per database for the whole module (starting one costs seconds);
tests use their own resource names so they do not depend on each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from control_harness import (
    ServerProcess,
    create_database,
    create_schema,
    drop_database,
    require_postgres,
    start_server,
)
from manifests import IMAGE, documents, image_document, site
from sqlalchemy import select, update
from typer.testing import CliRunner

from fleetplane.cli.main import app
from fleetplane.control.store import artifacts as artifact_store
from fleetplane.control.store.database import create_store_engine
from fleetplane.control.store.repository import Store
from fleetplane.control.store.schema import AUDIT

V1 = "/apis/fleetplane/v1"
ARTIFACTS = "/api/v1/artifacts"


@dataclass
class Live:
    server: ServerProcess
    database_url: str
    workdir: Path

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url,
            headers={"Authorization": f"Bearer {token or self.server.token}"},
            timeout=30,
        )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp(f"live-{request.param}")
    database = None
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'store.db'}"
    else:
        require_postgres()
        database = create_database()
        url = create_schema(database)
    # Unlimited writes: the concurrency test hammers one object from many clients.
    server = start_server(url, workdir, "--write-rate", "0")
    yield Live(server, url, workdir)
    server.stop()
    if database is not None:
        drop_database(database)


@pytest.fixture(autouse=True)
def isolated_client_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the real ~/.config, nor inherits FLEETPLANE_* variables."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in (
        "FLEETPLANE_SERVER",
        "FLEETPLANE_TOKEN",
        "FLEETPLANE_CA_CERT",
        "FLEETPLANE_DATABASE",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "config"


def cli(live: Live, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run a client command in-process against the live server."""
    base = {"FLEETPLANE_SERVER": live.server.url, "FLEETPLANE_TOKEN": live.server.token}
    return CliRunner().invoke(app, list(args), env={**base, **(env or {})})


# ------------------------------------------------------------- concurrency


def test_many_concurrent_clients_lose_no_update(live: Live) -> None:
    """12 clients each add 5 to one counter with read-modify-write and retries on 409."""
    with live.client() as client:
        doc = image_document("counter")
        doc["metadata"]["annotations"] = {"count": "0"}
        assert client.post(f"{V1}/nodeimages", json=doc).status_code == 201
    clients, increments = 12, 5
    conflicts = []

    def work(_: int) -> int:
        seen_conflicts = 0
        with live.client() as client:
            done = 0
            while done < increments:
                current = client.get(f"{V1}/nodeimages/counter").json()
                count = int(current["metadata"]["annotations"]["count"])
                current["metadata"]["annotations"]["count"] = str(count + 1)
                answer = client.put(f"{V1}/nodeimages/counter", json=current)
                if answer.status_code == 409:
                    seen_conflicts += 1
                    continue
                assert answer.status_code == 200, answer.text
                done += 1
        return seen_conflicts

    with ThreadPoolExecutor(clients) as pool:
        conflicts = list(pool.map(work, range(clients)))
    with live.client() as client:
        final = client.get(f"{V1}/nodeimages/counter").json()
    assert final["metadata"]["annotations"]["count"] == str(clients * increments)
    # Contention really happened, so the test exercised the conflict path.
    assert sum(conflicts) > 0


# -------------------------------------------------------------------- watch


class LiveWatch:
    """A watch read in a background thread over a real socket."""

    def __init__(self, live: Live, version: str | None) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        params = {"watch": "true", "labelSelector": "suite=watch"}
        if version is not None:
            params["resourceVersion"] = version
        self._client = live.client()
        self._client.timeout = httpx.Timeout(30, read=None)
        request = self._client.build_request("GET", f"{V1}/nodeimages", params=params)
        self._response = self._client.send(request, stream=True)
        assert self._response.status_code == 200
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self._response.iter_lines():
                if line:
                    self.events.put(json.loads(line))
        except httpx.HTTPError:
            return

    def next(self) -> tuple[str, str, dict[str, Any]]:
        while True:
            event = self.events.get(timeout=30)
            if event["type"] != "BOOKMARK":
                obj = event["object"]
                return event["type"], obj["metadata"]["name"], obj

    def close(self) -> None:
        self._response.close()
        self._client.close()


def labelled(name: str, os_name: str = "v1") -> dict[str, Any]:
    doc = image_document(name, os_name)
    doc["metadata"]["labels"] = {"suite": "watch"}
    return doc


def test_a_reconnecting_watcher_misses_nothing(live: Live) -> None:
    with live.client() as client:
        client.post(f"{V1}/nodeimages", json=labelled("w-a"))
        watcher = LiveWatch(live, None)
        assert watcher.next()[:2] == ("ADDED", "w-a")
        client.put(f"{V1}/nodeimages/w-a", json=labelled("w-a", "v2"))
        kind, name, obj = watcher.next()
        assert (kind, name, obj["spec"]["os"]) == ("MODIFIED", "w-a", "v2")
        last_seen = obj["metadata"]["resourceVersion"]
        watcher.close()

        # While disconnected: changes the watcher must get on reconnect, in order.
        client.post(f"{V1}/nodeimages", json=labelled("w-b"))
        client.put(f"{V1}/nodeimages/w-a", json=labelled("w-a", "v3"))
        client.delete(f"{V1}/nodeimages/w-b")

        watcher = LiveWatch(live, last_seen)
        assert [watcher.next()[:2] for _ in range(3)] == [
            ("ADDED", "w-b"),
            ("MODIFIED", "w-a"),
            ("DELETED", "w-b"),
        ]
        client.post(f"{V1}/nodeimages", json=labelled("w-c"))
        assert watcher.next()[:2] == ("ADDED", "w-c")
        watcher.close()


# ---------------------------------------------------------------------- CLI


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_cli_apply_get_describe_delete(live: Live, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    write(fleet / "images.yaml", IMAGE)
    write(fleet / "sites" / "c1.yaml", site("cli-1", region="eu-west"))
    write(fleet / "sites" / "c2.yaml", site("cli-2", region="us-east"))

    dry = cli(live, "apply", "-f", str(fleet), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Site/cli-1 would be created" in dry.stdout
    applied = cli(live, "apply", "-f", str(fleet))
    assert "Site/cli-2 created" in applied.stdout
    write(fleet / "sites" / "c2.yaml", site("cli-2", region="us-west"))
    diff = cli(live, "apply", "-f", str(fleet), "--dry-run")
    assert "Site/cli-2 would be changed" in diff.stdout
    assert "spec.region: us-east → us-west" in diff.stdout
    assert "Site/cli-1 unchanged" in diff.stdout

    table = cli(live, "get", "sites", "-l", "region=eu-west")
    assert table.exit_code == 0 and "cli-1" in table.stdout and "cli-2" not in table.stdout
    wide = cli(live, "get", "site", "-o", "wide")
    assert "LABELS" in wide.stdout and "region=us-east" in wide.stdout
    as_json = json.loads(cli(live, "get", "Site", "cli-1", "-o", "json").stdout)
    assert as_json["spec"]["region"] == "eu-west"
    assert "kind: Site" in cli(live, "get", "sites", "cli-1", "-o", "yaml").stdout
    described = cli(live, "describe", "site", "cli-1")
    assert "Name:          cli-1" in described.stdout and "nodePools" in described.stdout

    assert cli(live, "delete", "site", "cli-2").stdout.strip() == "Site/cli-2 deleted"
    missing = cli(live, "get", "site", "cli-2")
    assert missing.exit_code == 1 and "not found" in missing.output
    unknown = cli(live, "get", "gizmo")
    assert unknown.exit_code == 1 and "unknown kind" in unknown.output


def test_cli_apply_reports_problems_in_the_users_files(live: Live, tmp_path: Path) -> None:
    fleet = tmp_path / "bad"
    write(fleet / "a.yaml", IMAGE)
    write(fleet / "b.yaml", site("cli-bad").replace("memory: 32Gi", "memory: plenty"))
    result = cli(live, "apply", "-f", str(fleet))
    assert result.exit_code == 1
    assert (
        f"{fleet / 'b.yaml'}:14:15" in result.output and "spec.nodePools[0].memory" in result.output
    )
    assert cli(live, "get", "site", "cli-bad").exit_code == 1


def test_cli_watch_prints_events_until_its_timeout(live: Live) -> None:
    with live.client() as client:
        client.post(f"{V1}/nodeimages", json=image_document("watched"))
    result = cli(live, "watch", "nodeimages", "--timeout", "0.5")
    assert result.exit_code == 0
    assert "ADDED     NodeImage/watched" in result.stdout


def test_cli_token_lifecycle_and_unauthenticated_errors(live: Live) -> None:
    created = cli(live, "token", "create", "--role", "viewer", "--name", "carol", "--ttl", "1h")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("fp_") and "shown once" in created.stderr
    listed = cli(live, "token", "list")
    assert "carol" in listed.stdout and "viewer" in listed.stdout and token not in listed.stdout
    as_carol = cli(live, "get", "sites", env={"FLEETPLANE_TOKEN": token})
    assert as_carol.exit_code == 0
    forbidden = cli(live, "delete", "nodeimage", "ubuntu", env={"FLEETPLANE_TOKEN": token})
    assert forbidden.exit_code == 1 and "HTTP 403" in forbidden.output
    revoked = cli(live, "token", "revoke", token)
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    refused = cli(live, "get", "sites", env={"FLEETPLANE_TOKEN": token})
    assert refused.exit_code == 1 and "revoked" in refused.output and "HTTP 401" in refused.output
    anonymous = cli(live, "get", "sites", env={"FLEETPLANE_TOKEN": ""})
    assert anonymous.exit_code == 1 and "no token given" in anonymous.output


def test_cli_reads_server_and_token_from_the_config_file(
    live: Live, isolated_client_config: Path
) -> None:
    write(
        isolated_client_config / "fleetplane" / "config.yaml",
        f"server: {live.server.url}\ntoken: {live.server.token}\n",
    )
    from_config = CliRunner().invoke(app, ["get", "nodeimages"])
    assert from_config.exit_code == 0, from_config.output
    # The environment wins over the file, and a flag over both.
    bad = CliRunner().invoke(app, ["get", "nodeimages"], env={"FLEETPLANE_TOKEN": "fp_bad"})
    assert bad.exit_code == 1
    flag = CliRunner().invoke(
        app,
        ["get", "nodeimages", "--token", live.server.token],
        env={"FLEETPLANE_TOKEN": "fp_bad"},
    )
    assert flag.exit_code == 0
    nowhere = CliRunner().invoke(app, ["get", "nodeimages", "--server", "http://127.0.0.1:9"])
    assert nowhere.exit_code == 1 and "cannot reach the control plane" in nowhere.output


def test_cli_audit_log_and_verify_detects_tampering(live: Live) -> None:
    with live.client() as client:
        client.post(f"{V1}/nodeimages", json=image_document("audited"))
    log = cli(live, "audit", "log")
    assert log.exit_code == 0 and "NodeImage/audited" in log.stdout
    assert cli(live, "audit", "verify").exit_code == 0
    engine = create_store_engine(live.database_url)
    try:
        with engine.begin() as connection:
            original = connection.execute(AUDIT.select().where(AUDIT.c.seq == 2)).one()
            connection.execute(update(AUDIT).where(AUDIT.c.seq == 2).values(actor="mallory"))
        try:
            broken = cli(live, "audit", "verify")
            assert broken.exit_code == 1
            assert "record 2" in broken.output and "modified" in broken.output
        finally:
            with engine.begin() as connection:
                connection.execute(
                    update(AUDIT).where(AUDIT.c.seq == 2).values(actor=original.actor)
                )
        assert cli(live, "audit", "verify").exit_code == 0
    finally:
        engine.dispose()


def _push_artifact(client: httpx.Client, name: str, data: bytes) -> str:
    """Push ``data`` as ``name``:1 in parts; its digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload_id = _upload_parts(client, data)
    pushed = client.post(ARTIFACTS, json={"name": name, "version": "1", "digest": digest,
                                          "uploadId": upload_id})
    assert pushed.status_code == 201, pushed.text
    return digest


def _upload_parts(client: httpx.Client, data: bytes) -> str:
    begun = client.post(f"{ARTIFACTS}/uploads")
    assert begun.status_code == 201, begun.text
    upload_id: str = begun.json()["uploadId"]
    part = begun.json()["partBytes"]
    for seq, start in enumerate(range(0, len(data), part)):
        sent = client.put(f"{ARTIFACTS}/uploads/{upload_id}/parts/{seq}",
                          content=data[start:start + part])
        assert sent.status_code == 200, sent.text
    return upload_id


def _backup_rows(path: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The header and the rows per table of a backup file."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    rows: dict[str, list[dict[str, Any]]] = {}
    for entry in lines[1:-1]:
        rows.setdefault(entry["table"], []).append(entry["row"])
    assert "end" in lines[-1]
    return lines[0], rows


def test_cli_backup_of_a_running_store_restores_into_an_empty_one(
    live: Live, tmp_path: Path
) -> None:
    # Over two chunks, so the order of a blob's chunks must survive the round trip.
    weights = os.urandom(artifact_store.CHUNK_BYTES + 4321)
    with live.client() as client:
        client.post(f"{V1}/apply", content=documents(IMAGE, site("backed-up")))
        digest = _push_artifact(client, "backed-up", weights)
        # An upload never committed is no part of the store's state.
        _upload_parts(client, b"half-done")
    out = tmp_path / "backup.json"
    taken = CliRunner().invoke(app, ["backup", "--out", str(out), "--database", live.database_url])
    assert taken.exit_code == 0, taken.output
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    upgraded = CliRunner().invoke(app, ["db", "upgrade", "--database", target])
    assert upgraded.exit_code == 0 and "upgraded from empty" in upgraded.stdout
    restored = CliRunner().invoke(app, ["restore", str(out), "--database", target])
    assert restored.exit_code == 0, restored.output

    source, copy = (Store(create_store_engine(url)) for url in (live.database_url, target))
    try:
        header, backup = _backup_rows(out)
        copied, version = copy.list_resources()
        assert version == header["resourceVersion"]
        assert {(r.kind, r.name, r.resource_version) for r in copied} == {
            (r["kind"], r["name"], r["resource_version"]) for r in backup["resources"]
        }
        assert ("Site", "backed-up") in {(r.kind, r.name) for r in copied}
        restored_audit = copy.audit.records(copy.engine)
        assert restored_audit[-1].action == "store.restore"
        assert copy.audit.verify(copy.engine).ok
        assert len(restored_audit) == len(backup["audit"]) + 1
        # Watches on the restored store relist: its event log starts after the backup.
        with pytest.raises(Exception, match="too old"):
            copy.events_since(0)
        # Artifacts: the same records, and every blob byte for byte.
        assert artifact_store.list_artifacts(copy.engine) == artifact_store.list_artifacts(
            source.engine)
        assert b"".join(artifact_store.blob_chunks(copy.engine, digest)) == weights
        with copy.engine.connect() as connection:
            owners = set(connection.execute(select(artifact_store.CHUNKS.c.owner)).scalars())
        assert owners and all(owner.startswith("sha256:") for owner in owners)
    finally:
        source.engine.dispose()
        copy.engine.dispose()
    again = CliRunner().invoke(app, ["restore", str(out), "--database", target])
    assert again.exit_code == 1 and "empty store" in again.output


def test_a_truncated_backup_is_refused_and_restores_nothing(live: Live, tmp_path: Path) -> None:
    out = tmp_path / "backup.json"
    taken = CliRunner().invoke(app, ["backup", "--out", str(out), "--database", live.database_url])
    assert taken.exit_code == 0, taken.output
    lines = out.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.json"
    cut.write_text("".join(lines[:-2]))
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    refused = CliRunner().invoke(app, ["restore", str(cut), "--database", target])
    assert refused.exit_code == 1 and "truncated" in refused.output
    copy = Store(create_store_engine(target))
    try:
        assert copy.list_resources()[0] == []
    finally:
        copy.engine.dispose()


def test_a_v1_backup_from_before_artifacts_still_restores(live: Live, tmp_path: Path) -> None:
    out = tmp_path / "backup.json"
    taken = CliRunner().invoke(app, ["backup", "--out", str(out), "--database", live.database_url])
    assert taken.exit_code == 0, taken.output
    header, rows = _backup_rows(out)
    legacy = {"format": "fleetplane-backup/v1", "schemaRevision": header["schemaRevision"],
              "resourceVersion": header["resourceVersion"],
              **{key: rows.get(key, []) for key in (
                  "resources", "tokens", "audit", "siteRevisions", "bootstrapTokens",
                  "renewalCredentials")}}
    old = tmp_path / "v1.json"
    old.write_text(json.dumps(legacy, indent=1))
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    restored = CliRunner().invoke(app, ["restore", str(old), "--database", target])
    assert restored.exit_code == 0, restored.output
    copy = Store(create_store_engine(target))
    try:
        copied, version = copy.list_resources()
        assert version == header["resourceVersion"]
        assert len(copied) == len(rows["resources"])
        assert artifact_store.list_artifacts(copy.engine) == []
    finally:
        copy.engine.dispose()


def test_break_glass_token_written_into_the_store_works_at_once(live: Live) -> None:
    created = CliRunner().invoke(
        app,
        ["token", "create", "--role", "admin", "--name", "ops", "--database", live.database_url],
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert cli(live, "token", "list", env={"FLEETPLANE_TOKEN": token}).exit_code == 0
    log = cli(live, "audit", "log")
    assert "token.create" in log.stdout
    offline = ["--database", live.database_url]
    bad_ttl = CliRunner().invoke(
        app, ["token", "create", "--role", "admin", "--name", "x", "--ttl", "soon", *offline]
    )
    assert bad_ttl.exit_code == 1 and "--ttl" in bad_ttl.output
