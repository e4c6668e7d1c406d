"""Everything `fleetplane serve` can be told, in one immutable value.

The app factory takes a :class:`Settings` and nothing else, so tests build
apps with exactly the knobs they care about and the CLI is a thin mapping
from flags to fields.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from fleetplane.errors import ValidationError

if TYPE_CHECKING:
    # Loaded when a keyring is: every CLI command imports these settings' defaults.
    from fleetplane.security.keyring import Keyring

DEFAULT_DATABASE = "sqlite:///fleetplane.db"
DEFAULT_LISTEN = "127.0.0.1:8080"
SECRETS_KEY_ENV = "FLEETPLANE_SECRETS_KEY"
AUDIT_KEY_ENV = "FLEETPLANE_AUDIT_KEY"


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        """``HOST:PORT`` (``[::1]:8080`` for IPv6)."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValidationError(
                f"--listen {text!r} must be HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080"
            )
        return cls(host.strip("[]"), int(port))

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Limits:
    """Protection against clients that send too much, too often."""

    max_body_bytes: int = 4 * 1024 * 1024
    # Token bucket per identity on write endpoints: sustained rate and burst.
    writes_per_second: float = 50.0
    write_burst: int = 200


@dataclass(frozen=True)
class WatchSettings:
    # Idle watches get a BOOKMARK this often so clients can resume from a
    # recent version even when their kind saw no change.
    bookmark_interval: float = 15.0
    # How often every replica polls the store for versions written by other
    # replicas (the in-process notifier only sees this process's writes).
    poll_interval: float = 1.0
    # Events kept for resuming watches; older versions answer 410 Gone.
    event_history: int = 10_000
    # Events read from the store per round trip.
    batch_size: int = 500


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE
    listen: Listen = field(default_factory=lambda: Listen.parse(DEFAULT_LISTEN))
    tls_cert: Path | None = None
    tls_key: Path | None = None
    admin_token_file: Path | None = None
    # Keys for Secrets at rest, and for an HMAC-keyed audit chain.
    secrets_keyring: Keyring | None = None
    audit_keyring: Keyring | None = None
    # Lifetime of the admin token printed when serve initialises an empty store.
    admin_token_ttl: timedelta = timedelta(days=365)
    fleet_name: str = "default"
    limits: Limits = field(default_factory=Limits)
    watch: WatchSettings = field(default_factory=WatchSettings)
    # `serve` migrates the schema on start; `db upgrade` does it on its own.
    migrate_on_start: bool = True

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def tokens_allowed(self) -> bool:
        """Bearer tokens travel in clear text without TLS: accept them only on loopback."""
        return self.tls or self.listen.is_loopback

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def load_optional_keyring(path: Path | None, env_var: str) -> Keyring | None:
    """A keyring from ``path``, else from ``env_var`` when it is set, else None."""
    from fleetplane.security.keyring import load_keyring

    if path is not None:
        return load_keyring(path=path)
    if os.environ.get(env_var, "").strip():
        return load_keyring(env_var=env_var)
    return None
