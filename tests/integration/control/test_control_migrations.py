"""Migrations: an old schema with data in it upgrades with the data intact; models match."""

from __future__ import annotations

import json

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from fleetplane.control.controllers.tables import ControlBase
from fleetplane.control.store import migrate
from fleetplane.control.store.artifacts import ArtifactBase
from fleetplane.control.store.database import create_store_engine
from fleetplane.control.store.repository import Desired, Store
from fleetplane.control.store.schema import Base


def test_upgrade_from_the_first_revision_keeps_resources_events_and_audit(
    database_url: str,
) -> None:
    engine = create_store_engine(database_url)
    try:
        migrate.upgrade(engine, "0001")
        assert migrate.current_revision(engine) == "0001"
        document = {"apiVersion": "fleetplane/v1", "kind": "NodeImage"}
        with engine.begin() as connection:
            # Rows as revision 0001 wrote them (no prev_labels column yet).
            connection.execute(
                text(
                    "INSERT INTO resources (kind, name, uid, resource_version, generation, "
                    "labels, annotations, spec, status, created_at, updated_at) VALUES "
                    "('NodeImage', 'old', 'u-1', 1, 1, :labels, '{}', :spec, NULL, "
                    "'2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
                ),
                {"labels": json.dumps({"tier": "edge"}), "spec": json.dumps({"os": "x"})},
            )
            connection.execute(
                text(
                    "INSERT INTO events (resource_version, type, kind, name, object, created_at) "
                    "VALUES (1, 'ADDED', 'NodeImage', 'old', :object, '2026-01-01T00:00:00Z')"
                ),
                {"object": json.dumps(document)},
            )
            connection.execute(text("UPDATE counters SET value = 1 WHERE name = 'resourceVersion'"))
        before = migrate.upgrade(engine)
        assert (before, migrate.current_revision(engine)) == ("0001", migrate.head_revision())
        store = Store(engine)
        old = store.get("NodeImage", "old")
        assert (old.labels, old.spec, old.resource_version) == ({"tier": "edge"}, {"os": "x"}, 1)
        events = store.events_since(0).events
        assert [(e.type, e.name, e.prev_labels) for e in events] == [("ADDED", "old", None)]
        # The upgraded store keeps working from where it was.
        changed = store.replace(
            Desired("NodeImage", "old", {"tier": "core"}, {}, {"os": "y"}), actor="t"
        )
        assert changed.resource_version == 2 and changed.generation == 2
        assert store.events_since(1).events[0].prev_labels == {"tier": "edge"}
        assert store.audit.verify(engine).ok
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_store_engine(database_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(connection),
                [Base.metadata, ControlBase.metadata, ArtifactBase.metadata],
            )
        assert differences == []
    finally:
        engine.dispose()


def test_upgrading_twice_is_a_no_op(database_url: str) -> None:
    engine = create_store_engine(database_url)
    try:
        assert migrate.upgrade(engine) is None
        assert migrate.upgrade(engine) == migrate.head_revision()
    finally:
        engine.dispose()
