"""Heartbeats that change nothing else: the status written in place, no new version, no event.

An agent reports the same status every few seconds; only its heartbeat
time moves. Written as an ordinary status change, each such write took a
new resource version, an event in the change log (the full Site document
encoded), and woke every reader of the log (controllers, watches) to find
nothing of interest. :func:`touch_statuses` writes the status where the
resource is still at the version the caller last saw, and nothing else:
readers of the log see no change, readers of the status (the reachability
controller, a GET) see the new heartbeat. The caller decides what counts as
"only the heartbeat" and falls back to an ordinary write for the resources
that had moved on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from fleetplane.control.store.database import write_transaction
from fleetplane.control.store.repository import Store, utc_now
from fleetplane.control.store.schema import RESOURCES

_TOUCH = (
    update(RESOURCES)
    .where(
        RESOURCES.c.kind == bindparam("t_kind"),
        RESOURCES.c.name == bindparam("t_name"),
        RESOURCES.c.resource_version == bindparam("t_version"),
    )
    .values(status=bindparam("t_status"), updated_at=bindparam("t_updated_at"))
)


def touch_statuses(
    store: Store, touches: Sequence[tuple[str, str, int, dict[str, Any]]]
) -> tuple[list[bool], str]:
    """Write each ``(kind, name, version, status)`` where the resource is still at ``version``.

    One transaction (behind the store's write gate), no version allocated and
    no event written; each resource at most once. Answers, per touch, whether
    it was written (False: the resource moved to another version or is gone),
    and the update time stamped on those written.
    """
    now = utc_now()
    rows = [
        {"t_kind": kind, "t_name": name, "t_version": version, "t_status": status,
         "t_updated_at": now}
        for kind, name, version, status in touches
    ]

    def write(connection: Connection) -> list[bool]:
        result = connection.execute(_TOUCH, rows)
        if connection.dialect.supports_sane_multi_rowcount and result.rowcount == len(rows):
            return [True] * len(rows)
        # Some resource moved on (or the driver cannot count): which ones are still at
        # their version, and so were written? Same transaction, under the write lock.
        return _still_at(connection, touches)

    if not rows:
        return [], now
    # Store.run_write without its epilogue: no version was taken, so there is
    # none to read back and none to announce to the change listeners.
    with store.gate.turn(), write_transaction(store.engine) as connection:
        written = write(connection)
    return written, now


def _still_at(
    connection: Connection, touches: Sequence[tuple[str, str, int, dict[str, Any]]]
) -> list[bool]:
    current: dict[tuple[str, str], int] = {}
    for kind in {kind for kind, _, _, _ in touches}:
        names = sorted({name for k, name, _, _ in touches if k == kind})
        for start in range(0, len(names), 500):
            found = connection.execute(
                select(RESOURCES.c.name, RESOURCES.c.resource_version).where(
                    RESOURCES.c.kind == kind, RESOURCES.c.name.in_(names[start:start + 500])
                )
            ).all()
            current.update({(kind, row.name): int(row.resource_version) for row in found})
    return [current.get((kind, name)) == version for kind, name, version, _ in touches]
