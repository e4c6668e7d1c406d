"""A fan-out to many sites written in chunks; the write gate lets foreground writers go first."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from fleetplane.control.controllers.transactions import (
    revisions_after_version,
    revisions_since,
    write_site_states,
    write_statuses,
)
from fleetplane.control.plane import ControlPlane
from fleetplane.control.settings import Settings
from fleetplane.control.store.repository import Desired, WriteGate

SITES = [f"s{index:02d}" for index in range(11)]


@pytest.fixture
def plane(database_url: str) -> Iterator[ControlPlane]:
    opened = ControlPlane.open(Settings(database_url=database_url))
    yield opened
    opened.close()


def _specs(replicas: int) -> dict[str, dict[str, Any]]:
    return {site: {"workloads": [{"workload": "web", "replicas": replicas}]} for site in SITES}


def test_a_fan_out_in_chunks_writes_every_site_in_order_with_audit_and_events(
    plane: ControlPlane,
) -> None:
    store = plane.store
    before = store.current_version()
    audited = len(store.audit.records(store.engine))
    first = write_site_states(store, _specs(1), actor="t", keep=3, chunk=4)
    second = write_site_states(store, _specs(2), actor="t", keep=3, chunk=4)
    # Unchanged workloads: no new revision for anyone.
    assert write_site_states(store, _specs(2), actor="t", keep=3, chunk=4) == []

    assert [w.site for w in first] == SITES and [w.site for w in second] == SITES
    assert {w.revision for w in first} == {1} and {w.revision for w in second} == {2}
    versions = [w.resource_version for w in first + second]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert versions[0] > before and versions[-1] == store.current_version()
    # One audit entry and one event per site revision; the revision rows ordered by version.
    assert len(store.audit.records(store.engine)) == audited + 2 * len(SITES)
    events = store.events_since(before, kinds=["SiteDesiredState"], limit=1000).events
    assert [e.resource_version for e in events] == versions
    assert [r.resource_version for r in revisions_after_version(store, before)] == versions
    for site in SITES:
        kept = revisions_since(store, site, 0)
        assert [r.revision for r in kept.revisions] == [1, 2] and kept.latest == 2
        assert kept.revisions[1].document["spec"]["workloads"][0]["replicas"] == 2


def test_events_since_filters_kinds_in_the_query_and_still_moves_past_the_others(
    plane: ControlPlane,
) -> None:
    store = plane.store
    before = store.current_version()
    store.create(Desired("NodeImage", "ubuntu", {}, {}, {"os": "ubuntu-22.04"}), actor="t")
    write_site_states(store, _specs(1), actor="t", keep=3, chunk=5)
    batch = store.events_since(before, kinds=["NodeImage", "Workload"])
    assert [(e.kind, e.name) for e in batch.events] == [("NodeImage", "ubuntu")]
    assert batch.through == store.current_version()


def test_a_waiting_foreground_writer_goes_before_a_waiting_background_one() -> None:
    gate = WriteGate()
    order: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with gate.turn():
            holding.set()
            release.wait(30)

    def writer(name: str, background: bool) -> None:
        with gate.turn(background=background):
            order.append(name)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    assert holding.wait(30)
    threads.append(threading.Thread(target=writer, args=("background", True)))
    threads[1].start()
    threads.append(threading.Thread(target=writer, args=("foreground", False)))
    threads[2].start()
    # Both are queued behind the holder before it leaves.
    with gate._condition:
        assert gate._condition.wait_for(lambda: gate.waiting() == (1, 1), timeout=30)
    release.set()
    for thread in threads:
        thread.join(30)
    assert order == ["foreground", "background"]


def test_a_background_writer_goes_after_one_foreground_turn_however_many_queue() -> None:
    gate = WriteGate()
    order: list[str] = []
    entered = {name: threading.Event() for name in ("holder", "first")}
    leave = {name: threading.Event() for name in ("holder", "first")}

    def holder(name: str) -> None:
        with gate.turn():
            order.append(name)
            entered[name].set()
            leave[name].wait(30)

    def writer(name: str, background: bool) -> None:
        with gate.turn(background=background):
            order.append(name)

    def waiting(foreground: int, background: int) -> None:
        with gate._condition:
            assert gate._condition.wait_for(
                lambda: gate.waiting() == (foreground, background), timeout=30)

    threads = [threading.Thread(target=holder, args=("holder",))]
    threads[0].start()
    assert entered["holder"].wait(30)
    threads.append(threading.Thread(target=writer, args=("background", True)))
    threads[-1].start()
    # The background writer must be queued before the foreground one arrives: a thread
    # started is not yet a thread waiting at the gate.
    waiting(0, 1)
    threads.append(threading.Thread(target=holder, args=("first",)))
    threads[-1].start()
    waiting(1, 1)
    leave["holder"].set()
    assert entered["first"].wait(30)
    # Another status writer arrives while the first one writes: the background one is due.
    threads.append(threading.Thread(target=writer, args=("second", False)))
    threads[-1].start()
    waiting(1, 1)
    leave["first"].set()
    for thread in threads:
        thread.join(30)
    assert order == ["holder", "first", "background", "second"]


def test_status_writes_commit_between_the_chunks_of_a_fan_out(plane: ControlPlane) -> None:
    """A status write made while a fan-out runs commits before the fan-out's next chunk."""
    store = plane.store
    store.create(Desired("Site", "a", {}, {}, {"tier": "edge"}), actor="t")
    status_versions: list[int] = []
    status_done = threading.Event()
    commits = 0

    def status_writer() -> None:
        result = write_statuses(store, [("Site", "a", lambda _: {"reachability": "Reachable"})])
        written = result[0]
        assert not isinstance(written, Exception)
        status_versions.append(written.resource_version)
        status_done.set()

    def on_commit(version: int) -> None:
        nonlocal commits
        commits += 1
        if commits == 1:  # the fan-out's first chunk: write a status before it goes on
            threading.Thread(target=status_writer).start()
            assert status_done.wait(30)

    store.add_listener(on_commit)
    written = write_site_states(store, _specs(1), actor="t", keep=3, chunk=4)
    store.remove_listener(on_commit)
    assert status_versions, "the status write did not commit"
    assert written[3].resource_version < status_versions[0] < written[4].resource_version
