"""What the store refuses, as typed errors the API maps to status codes."""

from __future__ import annotations

from fleetplane.errors import FleetplaneError


class StoreError(FleetplaneError):
    """Base class of the store's refusals."""


class NotFound(StoreError):
    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        super().__init__(f"{kind} {name!r} not found")


class AlreadyExists(StoreError):
    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        super().__init__(
            f"{kind} {name!r} already exists; replace or patch it, or use apply"
        )


class Conflict(StoreError):
    """Optimistic concurrency: the caller edited an older version than the stored one."""

    def __init__(self, kind: str, name: str, expected: int, actual: int) -> None:
        self.kind, self.name = kind, name
        self.expected, self.actual = expected, actual
        super().__init__(
            f"{kind} {name!r} was modified: you sent resourceVersion {expected}, the stored "
            f"one is {actual}; read it again, reapply your change and retry"
        )


class Expired(StoreError):
    """A watch asked to resume from a version whose events were compacted away."""

    def __init__(self, requested: int, oldest: int) -> None:
        self.requested, self.oldest = requested, oldest
        super().__init__(
            f"resourceVersion {requested} is too old: events up to {oldest} were compacted; "
            "list again and watch from the list's resourceVersion"
        )


class NotEmpty(StoreError):
    """Restore goes only into an empty store, so nothing is silently merged."""


class SecretsUnavailable(StoreError):
    """A Secret was written or read but the server was started without a secrets key."""
