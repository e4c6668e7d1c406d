"""SPIFFE IDs that name agents: ``spiffe://<fleet>/site/<site>/agent/<id>``.

The fleet is the SPIFFE trust domain; site and agent id are path segments.
Names follow the fleet's resource-name rule (lower-case DNS-style), which is
stricter than SPIFFE requires, so every valid name is a valid segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SCHEME = "spiffe://"
# DNS-1123 subdomain, the rule resource names follow (model/base.py); it is a
# subset of both the SPIFFE trust-domain and path-segment alphabets.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def check_name(value: str, what: str) -> str:
    """``value`` when it is a valid fleet/site/agent name, else ValueError naming ``what``."""
    if not _NAME.match(value):
        raise ValueError(
            f"{what} {value!r} must be lower-case letters, digits, '-' or '.', "
            "start and end with a letter or digit, at most 253 characters"
        )
    return value


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """The identity an agent certificate is bound to."""

    fleet: str
    site: str
    agent_id: str

    def __post_init__(self) -> None:
        check_name(self.fleet, "fleet name")
        check_name(self.site, "site name")
        check_name(self.agent_id, "agent id")

    @property
    def uri(self) -> str:
        return f"{_SCHEME}{self.fleet}/site/{self.site}/agent/{self.agent_id}"

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """Parse an agent SPIFFE ID; ValueError says which part is wrong."""
        if not uri.startswith(_SCHEME):
            raise ValueError(f"{uri!r} is not a SPIFFE ID (must start with {_SCHEME!r})")
        fleet, _, path = uri[len(_SCHEME) :].partition("/")
        segments = path.split("/")
        if len(segments) != 4 or segments[0] != "site" or segments[2] != "agent":
            raise ValueError(
                f"{uri!r} is not an agent SPIFFE ID "
                f"(expected {_SCHEME}<fleet>/site/<site>/agent/<id>)"
            )
        return cls(fleet=fleet, site=segments[1], agent_id=segments[3])
