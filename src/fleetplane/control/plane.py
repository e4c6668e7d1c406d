"""The running control plane: settings, store, notifier and hooks, shared by routes and controllers.

One :class:`ControlPlane` per server process. Routes reach it through
``request.app.state.plane``; controllers get it passed to ``run``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Connection, Engine

from fleetplane.control.api.metrics import Metrics
from fleetplane.control.ratelimit import RateLimiter
from fleetplane.control.secrets import SecretCodec
from fleetplane.control.settings import Settings
from fleetplane.control.store import migrate
from fleetplane.control.store.database import create_store_engine
from fleetplane.control.store.notifier import ChangeNotifier
from fleetplane.control.store.repository import Store
from fleetplane.control.store.tokens import count_tokens, insert_token
from fleetplane.control.validation import ModelCache
from fleetplane.security.rbac import Principal, Role
from fleetplane.security.tokens import create_token

# The identity the server acts as for its own writes (bootstrap, controllers).
SYSTEM = Principal(name="system:controllers", role=Role.CONTROLLER)


class Controller(Protocol):
    """A long-running loop in the server process (placement, desired state, reachability).

    ``run`` is started as a task when the app starts and cancelled when it
    stops; it waits for changes with ``plane.notifier.wait_for(...)`` and
    reads them with ``plane.store.events_since(...)``.
    """

    name: str

    async def run(self, plane: ControlPlane) -> None: ...


# Names of objects of a kind that a principal's site refers to (Secrets and
# Artifacts an agent may fetch); the desired-state controller provides it.
ReferencedNames = Callable[[Principal, str], Collection[str]]


def _nothing_referenced(_principal: Principal, _kind: str) -> Collection[str]:
    return frozenset()


@dataclass
class ControlPlane:
    settings: Settings
    engine: Engine
    store: Store
    notifier: ChangeNotifier
    metrics: Metrics
    limiter: RateLimiter
    models: ModelCache = field(default_factory=ModelCache)
    referenced: ReferencedNames = _nothing_referenced

    @classmethod
    def open(cls, settings: Settings) -> ControlPlane:
        """Connect to the store (migrating it when the settings say so)."""
        engine = create_store_engine(settings.database_url)
        if settings.migrate_on_start:
            migrate.upgrade(engine)
        store = Store(
            engine,
            codec=SecretCodec(settings.secrets_keyring),
            event_history=settings.watch.event_history,
            audit_keyring=settings.audit_keyring,
        )
        notifier = ChangeNotifier()
        metrics = Metrics()
        store.add_listener(notifier.publish)
        store.add_listener(metrics.observe_version)
        limiter = RateLimiter(settings.limits.writes_per_second, settings.limits.write_burst)
        return cls(settings, engine, store, notifier, metrics, limiter)

    def initialise_admin(self) -> str | None:
        """On a store without any token, create the first admin token; its plaintext, once.

        Runs under the write lock, so replicas starting together create one
        token between them.
        """

        def write(connection: Connection) -> str | None:
            if count_tokens(connection) > 0:
                return None
            plaintext, record = create_token(
                "admin", Role.ADMIN, self.settings.admin_token_ttl, now=datetime.now(UTC)
            )
            insert_token(connection, self.store, record, actor=SYSTEM.name)
            return plaintext

        return self.store.run_write(write)

    def close(self) -> None:
        self.engine.dispose()
