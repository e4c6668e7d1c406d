"""The fan-out's encode-once path: same rows, events, digests and audit chain as the generic one.

A fan-out encodes each new SiteDesiredState once (resource row, event, revision
row and audit digest all from the same canonical text), reuses what it wrote
last instead of decoding the sites again, and hands its revisions to the
agent port's hub in process. Each shortcut must give exactly what the store
would give, and fall back to the store whenever what is in hand is stale.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from fleetplane.control.agent_api.desired import RevisionHub
from fleetplane.control.controllers.placement import fewer_full_collections
from fleetplane.control.controllers.transactions import (
    SDS_KIND,
    revision_feed,
    revision_keys_after_version,
    revisions_after_version,
    revisions_after_version_in_hand,
    revisions_since,
    write_site_states,
)
from fleetplane.control.plane import ControlPlane
from fleetplane.control.settings import Settings
from fleetplane.control.store.audit import digest
from fleetplane.control.store.repository import Desired, Prior, Store, json_text
from fleetplane.security.canonical import canonical_json

SITES = [f"e{index:02d}" for index in range(7)]


@pytest.fixture
def plane(database_url: str) -> Iterator[ControlPlane]:
    opened = ControlPlane.open(Settings(database_url=database_url))
    yield opened
    opened.close()


def _specs(value: str, sites: list[str] = SITES) -> dict[str, dict[str, Any]]:
    # Non-ASCII, nesting and floats: the canonical text must round-trip them all.
    return {
        site: {"workloads": [{"workload": "web", "env": {"NOTE": value, "ünï": "çödé"},
                              "resources": {"cpu": 1.5, "memory": "1Gi"}, "replicas": 2}]}
        for site in sites
    }


def _audit_by_name(store: Store) -> dict[str, list[Any]]:
    records: dict[str, list[Any]] = {}
    for record in store.audit.records(store.engine):
        if record.kind == SDS_KIND:
            records.setdefault(record.name, []).append(record)
    return records


def test_encoded_writes_store_what_the_generic_path_would(plane: ControlPlane) -> None:
    store = plane.store
    before = store.current_version()
    first = write_site_states(store, _specs("one"), actor="t", keep=5, chunk=3)
    second = write_site_states(store, _specs("two"), actor="t", keep=5, chunk=3)
    assert [w.revision for w in first + second] == [1] * len(SITES) + [2] * len(SITES)

    events = store.events_since(before, kinds=[SDS_KIND], limit=1000).events
    assert [e.type for e in events] == ["ADDED"] * len(SITES) + ["MODIFIED"] * len(SITES)
    audit = _audit_by_name(store)
    for site in SITES:
        stored = store.get(SDS_KIND, site)
        assert stored.spec["revision"] == 2 and stored.generation == 2
        assert stored.spec["workloads"][0]["env"]["ünï"] == "çödé"
        assert stored.labels == {"fleetplane.io/site": site}
        # The event and the revision row hold the stored document, exactly.
        last = [e for e in events if e.name == site][-1]
        assert last.object == stored.to_document()
        assert last.prev_labels == {"fleetplane.io/site": site}
        kept = revisions_since(store, site, 0).revisions
        assert [r.document for r in kept][-1] == stored.to_document()
        # The text it was written as is the canonical JSON of that document.
        written = next(w for w in second if w.site == site)
        assert written.encoded is not None
        assert written.encoded.encode() == canonical_json(stored.to_document())
        # Audit digests: the canonical digest of what the user part was and became.
        created, changed = audit[site]
        assert created.before_digest is None and created.actor == "t"
        assert created.after_digest == changed.before_digest
        assert changed.after_digest == digest(stored.desired())
        assert changed.action == "derive"
    assert store.audit.verify(store.engine).ok


def test_a_site_changed_behind_the_fan_outs_back_is_read_from_the_store(
    plane: ControlPlane, database_url: str
) -> None:
    """What the fan-out remembers is used only while the store still holds it."""
    store = plane.store
    write_site_states(store, _specs("one"), actor="t", keep=5)
    # Another replica (its own Store, so nothing in hand) writes site e00's next revision,
    # and someone writes e01's status: both bump versions this process did not write.
    other = ControlPlane.open(Settings(database_url=database_url))
    try:
        write_site_states(other.store, _specs("other", SITES[:1]), actor="replica", keep=5)
    finally:
        other.close()
    store.replace_status(SDS_KIND, SITES[1], {"seen": True})
    write_site_states(store, _specs("two"), actor="t", keep=5)

    assert [r.revision for r in revisions_since(store, SITES[0], 0).revisions] == [1, 2, 3]
    assert store.get(SDS_KIND, SITES[1]).status == {"seen": True}
    audit = _audit_by_name(store)
    for site in SITES:
        records = audit[site]
        # Each entry's before digest is the previous entry's after digest: the chain of
        # states has no hole, whoever wrote it.
        for earlier, later in itertools.pairwise(records):
            assert later.before_digest == earlier.after_digest
        assert records[-1].after_digest == digest(store.get(SDS_KIND, site).desired())
    assert store.audit.verify(store.engine).ok


def test_the_hub_gets_revisions_in_hand_and_reads_the_others(
    plane: ControlPlane, database_url: str
) -> None:
    store = plane.store
    start = store.current_version()
    # Until a hub reads the feed, nothing is kept in it.
    write_site_states(store, _specs("zero"), actor="t", keep=5, chunk=2)
    _, missing = revision_feed(store).take(revision_keys_after_version(store, start))
    assert len(missing) == len(SITES)
    revision_feed(store).activate()
    start = store.current_version()
    write_site_states(store, _specs("one"), actor="t", keep=5, chunk=2)
    keys = revision_keys_after_version(store, start)
    found, missing = revision_feed(store).take(keys)
    assert missing == [] and len(found) == len(SITES)
    assert all(r.encoded is not None for r in found)

    # Another replica's revisions are not in hand: read from the store.
    middle = store.current_version()
    other = ControlPlane.open(Settings(database_url=database_url))
    try:
        write_site_states(other.store, _specs("other", SITES[:2]), actor="replica", keep=5)
    finally:
        other.close()
    write_site_states(store, _specs("two"), actor="t", keep=5, chunk=2)
    in_hand = revisions_after_version_in_hand(store, start)
    from_store = revisions_after_version(store, start)
    assert in_hand == from_store
    assert [r.resource_version for r in in_hand] == sorted(r.resource_version for r in in_hand)
    _, missing = revision_feed(store).take(revision_keys_after_version(store, middle))
    assert [(k.site, k.revision) for k in missing] == [(SITES[0], 3), (SITES[1], 3)]
    for revision in in_hand:
        assert revision.document == json.loads(json_text(revision.document))

    # Once handed out, they are dropped; the store still has them.
    revision_feed(store).forget_through(store.current_version())
    found, missing = revision_feed(store).take(revision_keys_after_version(store, start))
    assert found == [] and len(missing) == len(from_store)
    assert revisions_after_version_in_hand(store, start) == from_store


def test_a_rolled_back_chunk_is_neither_remembered_nor_handed_out(plane: ControlPlane) -> None:
    store = plane.store
    revision_feed(store).activate()
    write_site_states(store, _specs("one"), actor="t", keep=5)
    start = store.current_version()

    def failing(connection: Any) -> None:
        from fleetplane.control.controllers.transactions import _write_site_chunk

        _write_site_chunk(store, connection, specs=_specs("lost"), actor="t", keep=5)
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        store.run_write(failing, committed=lambda _: pytest.fail("committed after rollback"))
    assert revision_keys_after_version(store, start) == []
    # The same versions are now given to another write of the same sites: what the
    # rolled-back one built must not be taken for it.
    written = write_site_states(store, _specs("two"), actor="t", keep=5)
    assert [w.document["spec"]["workloads"][0]["env"]["NOTE"] for w in written] == (
        ["two"] * len(SITES)
    )
    for site in SITES:
        assert store.get(SDS_KIND, site).spec["workloads"][0]["env"]["NOTE"] == "two"
    assert revisions_after_version_in_hand(store, start) == revisions_after_version(store, start)
    assert store.audit.verify(store.engine).ok


def test_write_encoded_creates_and_updates_like_write_many(plane: ControlPlane) -> None:
    store = plane.store
    spec = {"b": [1, 2.5, None], "a": {"ü": "x"}}

    def write(changes: list[tuple[Prior | None, Desired]]) -> Any:
        return store.run_write(
            lambda connection: store.write_encoded(connection, changes, actor="t", action="x")
        )

    (created,) = write([(None, Desired("NodeImage", "img", {"l": "1"}, {"n": "2"}, spec))])
    assert store.get("NodeImage", "img") == created.resource
    assert created.document.encode() == canonical_json(created.resource.to_document())
    assert created.desired_digest == digest(created.resource.desired())
    prior = Prior.of(store.get("NodeImage", "img"))
    (updated,) = write([(prior, Desired("NodeImage", "img", {"l": "2"}, {}, {"c": 1}))])
    stored = store.get("NodeImage", "img")
    assert stored == updated.resource and stored.generation == 2
    assert stored.uid == created.resource.uid
    events = store.events_since(created.resource.resource_version - 1, kind="NodeImage").events
    assert [(e.type, e.prev_labels) for e in events] == [("ADDED", None), ("MODIFIED", {"l": "1"})]
    assert events[-1].object == stored.to_document()
    records = [r for r in store.audit.records(store.engine) if r.kind == "NodeImage"]
    assert [(r.before_digest, r.after_digest) for r in records] == [
        (None, created.desired_digest), (created.desired_digest, digest(stored.desired()))
    ]
    assert store.audit.verify(store.engine).ok


def test_fewer_full_collections_restores_the_thresholds_after_nested_passes() -> None:
    before = gc.get_threshold()
    with fewer_full_collections():
        during = gc.get_threshold()
        with fewer_full_collections():
            assert gc.get_threshold() == during
        assert gc.get_threshold() == during
    assert during[0] == before[0] and during[1:] != before[1:]
    assert gc.get_threshold() == before


def test_the_revision_hub_hands_out_revisions_in_hand_and_from_other_replicas(
    plane: ControlPlane, database_url: str
) -> None:
    asyncio.run(_hub_round(plane, database_url))


async def _hub_round(plane: ControlPlane, database_url: str) -> None:
    hub = RevisionHub(plane)
    woken = hub.event(SITES[0])
    await asyncio.sleep(0)  # let the hub task reach its first wait (scheduling, not timing)
    await asyncio.to_thread(write_site_states, plane.store, _specs("one"), actor="t", keep=5)
    await asyncio.wait_for(woken.wait(), 30)
    fresh = hub.continuing(SITES[0], 0)
    assert fresh is not None and [r.revision for r in fresh] == [1]
    # Written here: its JSON came with it, and the watch line is built from that text.
    assert fresh[0].encoded is not None and fresh[0].line is not None
    assert json.loads(fresh[0].line) == {"type": "REVISION", "object": fresh[0].document}

    other = ControlPlane.open(Settings(database_url=database_url))
    try:
        woken = hub.event(SITES[0])
        await asyncio.to_thread(write_site_states, other.store, _specs("two", SITES[:1]),
                                actor="replica", keep=5)
    finally:
        other.close()
    # This process did not write it, so nobody here publishes its version: the poller
    # would; publish the store's version as it does.
    plane.notifier.publish(await asyncio.to_thread(plane.store.current_version))
    await asyncio.wait_for(woken.wait(), 30)
    fresh = hub.continuing(SITES[0], 1)
    assert fresh is not None and [r.revision for r in fresh] == [2]
    assert fresh[0].encoded is None and fresh[0].line is not None  # read from the store
    assert json.loads(fresh[0].line)["object"]["spec"]["workloads"][0]["env"]["NOTE"] == "two"
    plane.notifier.close()
