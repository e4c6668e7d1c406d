"""The agent's local state: last-known-good desired state, replicas it runs, telemetry buffer.

One SQLite file (``state.db`` in the data directory, WAL). Everything the
agent needs to carry on without the control plane is here, so a restart —
even after ``kill -9`` — resumes from disk: the applied revision and its
desired state, and each replica's pid and process start time (a pid alone
could have been reused by another process since).

A file that SQLite cannot read is moved aside (``state.db.corrupt-<time>``)
and the agent starts empty, taking its desired state from the server; it
logs a warning saying so.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("fleetplane.agent")

STATE_FILE = "state.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replicas (
    workload TEXT NOT NULL, idx INTEGER NOT NULL, pid INTEGER NOT NULL,
    start_time INTEGER NOT NULL, port INTEGER NOT NULL, pool TEXT NOT NULL,
    spec_hash TEXT NOT NULL, PRIMARY KEY (workload, idx));
CREATE TABLE IF NOT EXISTS surge_replicas (
    workload TEXT NOT NULL, idx INTEGER NOT NULL, pid INTEGER NOT NULL,
    start_time INTEGER NOT NULL, port INTEGER NOT NULL, pool TEXT NOT NULL,
    spec_hash TEXT NOT NULL, PRIMARY KEY (workload, idx));
CREATE TABLE IF NOT EXISTS draining_replicas (
    workload TEXT NOT NULL, idx INTEGER NOT NULL, pid INTEGER NOT NULL,
    start_time INTEGER NOT NULL, port INTEGER NOT NULL, pool TEXT NOT NULL,
    spec_hash TEXT NOT NULL, PRIMARY KEY (pid, start_time));
CREATE TABLE IF NOT EXISTS telemetry (
    seq INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS failed_pools (pool TEXT PRIMARY KEY);
"""


@dataclass(frozen=True)
class ReplicaRecord:
    workload: str
    index: int
    pid: int
    start_time: int
    port: int
    pool: str
    spec_hash: str


class LocalState:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / STATE_FILE
        self.recovered_from_corruption = False
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as error:
            aside = self.path.with_name(f"{STATE_FILE}.corrupt-{int(time.time())}")
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                self.path.with_name(STATE_FILE + suffix).unlink(missing_ok=True)
            log.warning(
                "local state %s is unreadable (%s); moved it to %s and starting from the "
                "control plane's desired state (workloads it started are not re-adopted)",
                self.path, error, aside,
            )
            self.recovered_from_corruption = True
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            verdict = db.execute("PRAGMA quick_check").fetchone()
            if verdict is None or verdict[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {verdict}")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        self._db.close()

    # --- desired state -----------------------------------------------------------

    def applied(self) -> tuple[int, dict[str, Any]] | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'desired'").fetchone()
        if row is None:
            return None
        document: dict[str, Any] = json.loads(row[0])
        return int(document["spec"]["revision"]), document

    def save_applied(self, document: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES ('desired', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (json.dumps(document),),
        )

    # --- replicas ----------------------------------------------------------------

    # A replacement being brought up beside the replica it replaces (surge) is kept in
    # its own table: both run at once under the same (workload, index).

    def replicas(self, surge: bool = False) -> list[ReplicaRecord]:
        rows = self._db.execute(
            "SELECT workload, idx, pid, start_time, port, pool, spec_hash FROM "
            + _replica_table(surge)
        ).fetchall()
        return [ReplicaRecord(*row) for row in rows]

    def save_replica(self, record: ReplicaRecord, surge: bool = False) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO {_replica_table(surge)} VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record.workload, record.index, record.pid, record.start_time, record.port,
             record.pool, record.spec_hash),
        )

    def forget_replica(self, workload: str, index: int, surge: bool = False) -> None:
        self._db.execute(f"DELETE FROM {_replica_table(surge)} WHERE workload = ? AND idx = ?",
                         (workload, index))

    # A replaced replica draining before it is stopped, in the background: several may
    # drain at once for one slot (changes in quick succession), so they are keyed by process.

    def draining(self) -> list[ReplicaRecord]:
        rows = self._db.execute(
            "SELECT workload, idx, pid, start_time, port, pool, spec_hash FROM draining_replicas"
        ).fetchall()
        return [ReplicaRecord(*row) for row in rows]

    def save_draining(self, record: ReplicaRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO draining_replicas VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record.workload, record.index, record.pid, record.start_time, record.port,
             record.pool, record.spec_hash),
        )

    def forget_draining(self, pid: int, start_time: int) -> None:
        self._db.execute("DELETE FROM draining_replicas WHERE pid = ? AND start_time = ?",
                         (pid, start_time))

    # --- failed pools ------------------------------------------------------------

    def failed_pools(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT pool FROM failed_pools")}

    def set_pool_failed(self, pool: str, failed: bool) -> None:
        if failed:
            self._db.execute("INSERT OR IGNORE INTO failed_pools VALUES (?)", (pool,))
        else:
            self._db.execute("DELETE FROM failed_pools WHERE pool = ?", (pool,))

    # --- telemetry buffer --------------------------------------------------------

    def buffer_telemetry(self, bodies: list[dict[str, Any]], limit: int) -> int:
        """Append intervals with the next sequence numbers; drop the oldest beyond ``limit``.

        Returns how many were dropped (counted in the agent's metrics).
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            last = self._db.execute("SELECT value FROM meta WHERE key = 'telemetry_seq'").fetchone()
            seq = int(last[0]) if last else 0
            for body in bodies:
                seq += 1
                self._db.execute(
                    "INSERT INTO telemetry(seq, body) VALUES (?, ?)",
                    (seq, json.dumps({**body, "sequence": seq})),
                )
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES ('telemetry_seq', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(seq),),
            )
            dropped = self._db.execute(
                "DELETE FROM telemetry WHERE seq <= ?", (seq - limit,)
            ).rowcount
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return int(dropped)

    def pending_telemetry(self, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT body FROM telemetry ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def acknowledge_telemetry(self, through: int) -> None:
        self._db.execute("DELETE FROM telemetry WHERE seq <= ?", (through,))

    def telemetry_backlog(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM telemetry").fetchone()[0])


def _replica_table(surge: bool) -> str:
    return "surge_replicas" if surge else "replicas"
