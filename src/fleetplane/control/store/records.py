"""Plain values the store hands out: a stored resource, a watch event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetplane.model.base import API_VERSION

EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED")


@dataclass(frozen=True)
class StoredResource:
    kind: str
    name: str
    uid: str
    resource_version: int
    generation: int
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]
    status: dict[str, Any] | None
    created_at: str
    updated_at: str

    def to_document(self) -> dict[str, Any]:
        """The Kubernetes-style document, with the server-written metadata."""
        document: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {
                "name": self.name,
                "labels": dict(self.labels),
                "annotations": dict(self.annotations),
                "uid": self.uid,
                # A string, as in Kubernetes: clients must treat it as opaque.
                "resourceVersion": str(self.resource_version),
                "generation": self.generation,
                "creationTimestamp": self.created_at,
                "updateTimestamp": self.updated_at,
            },
            "spec": self.spec,
        }
        if self.status is not None:
            document["status"] = self.status
        return document

    def desired(self) -> dict[str, Any]:
        """What a user controls (compared by apply and digested by the audit log)."""
        return {"labels": self.labels, "annotations": self.annotations, "spec": self.spec}


@dataclass(frozen=True)
class WatchEvent:
    type: str
    resource_version: int
    kind: str
    name: str
    object: dict[str, Any]
    # Labels before the change; None when unknown (treated as unchanged).
    prev_labels: dict[str, str] | None = None

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.object.get("metadata", {}).get("labels", {})
        return labels


@dataclass(frozen=True)
class EventBatch:
    """Events after some version, and the version the caller has now seen everything up to."""

    events: list[WatchEvent]
    through: int
