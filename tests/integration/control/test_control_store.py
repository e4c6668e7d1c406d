"""The store on SQLite and PostgreSQL: versions, concurrency, atomic apply, events, audit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text, update

from fleetplane.control.secrets import SecretCodec
from fleetplane.control.store import migrate
from fleetplane.control.store.database import create_store_engine
from fleetplane.control.store.errors import AlreadyExists, Conflict, Expired, NotFound
from fleetplane.control.store.repository import Desired, Store
from fleetplane.control.store.schema import AUDIT, RESOURCES
from fleetplane.errors import ValidationError
from fleetplane.security.keyring import Keyring


@pytest.fixture
def store(database_url: str, secrets_keyring: Keyring) -> Iterator[Store]:
    engine = create_store_engine(database_url)
    migrate.upgrade(engine)
    yield Store(engine, codec=SecretCodec(secrets_keyring), event_history=100)
    engine.dispose()


def image(name: str, os_name: str = "ubuntu", labels: dict[str, str] | None = None) -> Desired:
    return Desired("NodeImage", name, labels or {}, {}, {"os": os_name})


def test_versions_increase_with_every_write_and_generation_with_spec_changes(store: Store) -> None:
    created = store.create(image("a"), actor="t")
    relabelled = store.replace(image("a", labels={"x": "1"}), actor="t")
    changed = store.replace(image("a", "debian", {"x": "1"}), actor="t")
    status = store.replace_status("NodeImage", "a", {"seen": True})
    versions = [r.resource_version for r in (created, relabelled, changed, status)]
    assert versions == sorted(versions) and len(set(versions)) == 4
    assert [created.generation, relabelled.generation, changed.generation] == [1, 1, 2]
    assert status.generation == 2 and status.status == {"seen": True}
    assert store.current_version() == versions[-1]


def test_unchanged_replace_writes_nothing(store: Store) -> None:
    created = store.create(image("a"), actor="t")
    again = store.replace(image("a"), actor="t")
    assert again.resource_version == created.resource_version
    assert store.current_version() == created.resource_version


def test_create_existing_and_missing_targets_are_refused(store: Store) -> None:
    store.create(image("a"), actor="t")
    with pytest.raises(AlreadyExists):
        store.create(image("a"), actor="t")
    with pytest.raises(NotFound):
        store.replace(image("missing"), actor="t")
    with pytest.raises(NotFound):
        store.delete("NodeImage", "missing", actor="t")


def test_stale_resource_version_is_a_conflict_and_writes_nothing(store: Store) -> None:
    created = store.create(image("a"), actor="t")
    store.replace(image("a", "debian"), actor="t")
    stale = Desired("NodeImage", "a", {}, {}, {"os": "arch"}, None, created.resource_version)
    with pytest.raises(Conflict) as raised:
        store.replace(stale, actor="t")
    assert raised.value.expected == created.resource_version
    assert store.get("NodeImage", "a").spec == {"os": "debian"}
    with pytest.raises(Conflict):
        store.delete("NodeImage", "a", actor="t", expected_version=created.resource_version)


def test_concurrent_read_modify_write_loses_no_update(store: Store) -> None:
    """Threads increment one counter with optimistic concurrency; every increment lands."""
    store.create(Desired("NodeImage", "counter", {}, {"n": "0"}, {"os": "x"}), actor="t")
    threads, per_thread = 8, 15

    def work() -> None:
        done = 0
        while done < per_thread:
            current = store.get("NodeImage", "counter")
            bumped = str(int(current.annotations["n"]) + 1)
            desired = Desired(
                "NodeImage",
                "counter",
                {},
                {"n": bumped},
                {"os": "x"},
                None,
                current.resource_version,
            )
            try:
                store.replace(desired, actor="t")
                done += 1
            except Conflict:
                continue

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert store.get("NodeImage", "counter").annotations["n"] == str(threads * per_thread)


def test_apply_is_atomic_when_a_check_refuses(store: Store) -> None:
    store.create(image("keep"), actor="t")
    before = store.current_version()

    def refuse(_state: Any) -> None:
        raise ValidationError("no")

    with pytest.raises(ValidationError):
        store.apply([image("keep", "changed"), image("new")], actor="t", check=refuse)
    assert store.current_version() == before
    assert store.get("NodeImage", "keep").spec == {"os": "ubuntu"}
    with pytest.raises(NotFound):
        store.get("NodeImage", "new")


def test_apply_reports_created_changed_unchanged_with_field_changes(store: Store) -> None:
    store.create(image("same"), actor="t")
    store.create(image("old"), actor="t")
    batch = [image("same"), image("old", "debian"), image("new")]
    dry = store.apply(batch, actor="t", dry_run=True)
    assert [(o.name, o.action) for o in dry] == [
        ("same", "unchanged"),
        ("old", "changed"),
        ("new", "created"),
    ]
    assert [(c.path, c.before, c.after) for c in dry[1].changes] == [
        ("spec.os", "ubuntu", "debian")
    ]
    with pytest.raises(NotFound):
        store.get("NodeImage", "new")
    done = store.apply(batch, actor="t")
    assert [o.action for o in done] == ["unchanged", "changed", "created"]
    assert store.get("NodeImage", "new").resource_version == done[2].resource_version


def test_events_resume_from_any_version_and_old_versions_expire(store: Store) -> None:
    store.create(image("a", labels={"tier": "edge"}), actor="t")
    mark = store.current_version()
    store.replace(image("a", labels={"tier": "core"}), actor="t")
    store.delete("NodeImage", "a", actor="t")
    batch = store.events_since(mark)
    assert [e.type for e in batch.events] == ["MODIFIED", "DELETED"]
    assert batch.events[0].prev_labels == {"tier": "edge"}
    assert batch.through == store.current_version()
    # Write past the event history (100) so compaction drops the early events.
    for i in range(130):
        store.create(image(f"n{i}"), actor="t")
    with pytest.raises(Expired):
        store.events_since(mark)
    recent = store.events_since(store.current_version() - 5)
    assert len(recent.events) == 5


def test_events_of_one_kind_skip_others_but_advance_the_resume_point(store: Store) -> None:
    store.create(image("a"), actor="t")
    store.create(Desired("Secret", "s", {}, {}, {"data": {"k": "v"}}), actor="t")
    batch = store.events_since(0, kind="NodeImage")
    assert [e.name for e in batch.events] == ["a"]
    assert batch.through == store.current_version()


def test_secrets_are_sealed_in_the_database_and_events(store: Store) -> None:
    store.create(Desired("Secret", "db", {}, {}, {"data": {"password": "hunter2-xyz"}}), actor="t")
    with store.engine.connect() as connection:
        raw = connection.execute(select(RESOURCES.c.spec)).scalar_one()
        dump = connection.execute(text("SELECT object FROM events")).scalar_one()
    assert "hunter2-xyz" not in str(raw) and "hunter2-xyz" not in str(dump)
    assert store.reveal(store.get("Secret", "db")).spec["data"] == {"password": "hunter2-xyz"}
    unchanged = store.apply(
        [Desired("Secret", "db", {}, {}, {"data": {"password": "hunter2-xyz"}})], actor="t"
    )
    assert unchanged[0].action == "unchanged"


def test_every_change_is_audited_in_a_chain_that_detects_tampering(store: Store) -> None:
    store.create(image("a"), actor="alice")
    store.replace(image("a", "debian"), actor="bob")
    store.replace_status("NodeImage", "a", {"heartbeat": 1})
    store.delete("NodeImage", "a", actor="carol")
    records = store.audit.records(store.engine)
    assert [(r.actor, r.action) for r in records] == [
        ("alice", "create"),
        ("bob", "replace"),
        ("carol", "delete"),
    ]
    assert records[1].before_digest == records[0].after_digest
    assert store.audit.verify(store.engine).ok
    with store.engine.begin() as connection:
        connection.execute(update(AUDIT).where(AUDIT.c.seq == 2).values(actor="mallory"))
    result = store.audit.verify(store.engine)
    assert not result.ok and result.first_bad_seq == 2


def test_bulk_writes_match_one_at_a_time_writes(store: Store) -> None:
    """write_many/update_statuses: one statement per table, same rows, events and audit chain."""
    from fleetplane.control.controllers.transactions import write_statuses
    from fleetplane.control.store.repository import load_many

    store.create(image("kept"), actor="t")
    before = store.current_version()

    def bulk(connection: Any) -> list[Any]:
        currents = load_many(connection, "NodeImage", ["kept", "new", "changed-later"])
        return store.write_many(
            connection,
            [(currents.get("kept"), image("kept")),          # unchanged: no version
             (None, image("new")),                          # created
             (currents.get("kept"), image("kept", "debian"))],  # changed
            actor="bulk", action="derive",
        )

    unchanged, created, changed = store.run_write(bulk)
    assert unchanged.resource_version <= before
    assert [created.resource_version, changed.resource_version] == [before + 1, before + 2]
    assert changed.generation == 2 and changed.spec == {"os": "debian"}
    events = store.events_since(before).events
    assert [(e.type, e.name, e.resource_version) for e in events] == [
        ("ADDED", "new", before + 1), ("MODIFIED", "kept", before + 2)]
    assert store.audit.verify(store.engine).ok
    assert [(r.actor, r.name) for r in store.audit.records(store.engine)[-2:]] == [
        ("bulk", "new"), ("bulk", "kept")]

    # Heartbeats of one batch: a resource twice builds on its own first change; a missing
    # one and a failing change fail alone.
    def count(status: dict[str, Any] | None) -> dict[str, Any]:
        return {"beats": (status or {}).get("beats", 0) + 1}

    def boom(status: dict[str, Any] | None) -> dict[str, Any]:
        raise ValueError("refused")

    results = write_statuses(store, [("NodeImage", "new", count), ("NodeImage", "nope", count),
                                     ("NodeImage", "new", count), ("NodeImage", "kept", boom),
                                     ("NodeImage", "kept", count)])
    assert isinstance(results[1], NotFound) and isinstance(results[3], ValueError)
    assert store.get("NodeImage", "new").status == {"beats": 2}
    assert store.get("NodeImage", "kept").status == {"beats": 1}
    assert store.current_version() == before + 5


def test_the_store_digest_is_the_canonical_digest() -> None:
    from datetime import UTC, datetime

    from fleetplane.control.store.audit import digest
    from fleetplane.security.canonical import digest as canonical_digest

    documents: list[Any] = [
        {"spec": {"b": [1, 2.5, {"z": None, "a": True}], "a": "ünïcode ✓", "e": 1e-7}},
        {"labels": {}, "annotations": {"k": "v"}, "spec": {"workloads": [{"n": 10**20}]}},
        {"when": datetime(2026, 1, 2, tzinfo=UTC)},  # not plain JSON: the canonical path
    ]
    for document in documents:
        assert digest(document) == canonical_digest(document)
    with pytest.raises(TypeError):
        digest({"bad": object()})
