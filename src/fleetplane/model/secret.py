"""The Secret kind: small named values (passwords, API keys) for workloads.

Users write ``data`` in plain text in their YAML; the control plane encrypts
every value before it reaches the database and hands the plain text only to
admins and to agents whose site runs a workload that references the secret.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator

from fleetplane.model.base import EmptyStatus, Resource, Spec

_KEY = re.compile(r"^[A-Za-z0-9._-]{1,253}$")
MAX_SECRET_BYTES = 1024 * 1024


class SecretSpec(Spec):
    type: str = "Opaque"
    data: dict[str, str] = Field(description="key → value; encrypted at rest by the server")

    @field_validator("data")
    @classmethod
    def _keys_and_size(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _KEY.match(key):
                raise ValueError(
                    f"secret key {key!r} must be 1-253 letters, digits, '.', '_' or '-'"
                )
        total = sum(len(v.encode()) for v in value.values())
        if total > MAX_SECRET_BYTES:
            raise ValueError(f"secret data is {total} bytes; at most {MAX_SECRET_BYTES}")
        return value


class Secret(Resource[SecretSpec, EmptyStatus]):
    KIND: ClassVar[str] = "Secret"
    PLURAL: ClassVar[str] = "secrets"
    kind: str = "Secret"
