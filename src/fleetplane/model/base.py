"""Kubernetes-style envelopes shared by every resource kind."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

API_VERSION: Final = "fleetplane/v1"

# DNS-1123 label, like Kubernetes object names: names end up in URLs, file
# names, label values and CEL expressions, so keep them boring.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class Spec(BaseModel):
    """Base of every spec/status: camelCase in YAML, snake_case in Python, no unknown fields."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=False,
        validate_assignment=False,
    )


class Metadata(Spec):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Written by the server, ignored (but accepted) from files.
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: datetime | None = None
    update_timestamp: datetime | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"name {value!r} must be lower-case letters, digits, '-' or '.', "
                "start and end with a letter or digit, at most 253 characters"
            )
        return value


SpecT = TypeVar("SpecT", bound=Spec)
StatusT = TypeVar("StatusT", bound=Spec)


class EmptyStatus(Spec):
    """Status of kinds that carry none; still accepts arbitrary server-written fields."""

    model_config = ConfigDict(extra="allow")


class Resource(Spec, Generic[SpecT, StatusT]):
    """``apiVersion`` / ``kind`` / ``metadata`` / ``spec`` / ``status``."""

    KIND: ClassVar[str] = ""
    PLURAL: ClassVar[str] = ""

    api_version: Literal["fleetplane/v1"] = "fleetplane/v1"
    kind: str
    metadata: Metadata
    spec: SpecT
    status: StatusT | None = None

    @field_validator("kind")
    @classmethod
    def _kind_matches(cls, value: str) -> str:
        if cls.KIND and value != cls.KIND:
            raise ValueError(f"kind must be {cls.KIND!r}, got {value!r}")
        return value

    @property
    def name(self) -> str:
        return self.metadata.name

    def to_document(self) -> dict[str, Any]:
        """The resource as a plain YAML/JSON document in its human units."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
