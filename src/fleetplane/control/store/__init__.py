"""The transactional store of resources, events, tokens and the audit log."""

from fleetplane.control.store.errors import (
    AlreadyExists,
    Conflict,
    Expired,
    NotFound,
    StoreError,
)
from fleetplane.control.store.notifier import ChangeNotifier
from fleetplane.control.store.records import EventBatch, StoredResource, WatchEvent
from fleetplane.control.store.repository import ApplyOutcome, Desired, Store

__all__ = [
    "AlreadyExists",
    "ApplyOutcome",
    "ChangeNotifier",
    "Conflict",
    "Desired",
    "EventBatch",
    "Expired",
    "NotFound",
    "Store",
    "StoreError",
    "StoredResource",
    "WatchEvent",
]
