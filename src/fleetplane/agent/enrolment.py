"""The agent's identity: enrol with a bootstrap token, rotate at half-life, re-enrol when expired.

The private key is generated here and written only to ``identity.pem`` in the
data directory (mode 0600, together with its certificate so the two are
replaced in one rename); the control plane sees a CSR, never the key. The
renewal credential issued at enrolment (``renewal``, mode 0600) lets an
agent whose certificate expired during a long partition get a new one
without a person — the SPIRE failure mode (spire#1562) this avoids.
"""

from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from fleetplane import __version__
from fleetplane.agent.files import write_atomically
from fleetplane.errors import FleetplaneError

log = logging.getLogger("fleetplane.agent")

IDENTITY_FILE = "identity.pem"
RENEWAL_FILE = "renewal"
META_FILE = "identity.json"


class EnrolmentError(FleetplaneError):
    """The control plane refused to issue a certificate; the message says why and what to do."""


@dataclass(frozen=True)
class Certificate:
    not_after: datetime
    issued_at: datetime

    def half_life(self) -> datetime:
        return self.issued_at + (self.not_after - self.issued_at) / 2

    def expired(self, now: datetime) -> bool:
        return now >= self.not_after


class Identity:
    """The agent's key, certificate and renewal credential in ``data_dir``.

    The agent asks for :meth:`certificate` in every loop, so the validity is
    also kept in ``identity.json`` and cached by that file's mtime: reading it
    needs no X.509 parser, and ``cryptography`` (≈ 10 MB) is imported only to
    make a key and CSR, or for an identity written without ``notAfter``.
    """

    def __init__(self, data_dir: Path, site: str, agent_id: str, ca_pem: bytes) -> None:
        self.data_dir = data_dir
        self.site = site
        self.agent_id = agent_id
        self.ca_pem = ca_pem
        self._cached: tuple[tuple[int, int], Certificate] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def identity_path(self) -> Path:
        return self.data_dir / IDENTITY_FILE

    def certificate(self) -> Certificate | None:
        meta = self.data_dir / META_FILE
        try:
            seen = meta.stat()
        except FileNotFoundError:
            return None
        version = (seen.st_mtime_ns, seen.st_size)
        if self._cached is not None and self._cached[0] == version:
            return self._cached[1]
        if not self.identity_path.is_file():
            return None
        fields = json.loads(meta.read_text())
        issued = datetime.fromisoformat(fields["issuedAt"])
        not_after = (datetime.fromisoformat(fields["notAfter"]) if "notAfter" in fields
                     else _not_after(self.identity_path.read_bytes()))
        found = Certificate(not_after, issued)
        self._cached = (version, found)
        return found

    def renewal_credential(self) -> str | None:
        path = self.data_dir / RENEWAL_FILE
        return path.read_text().strip() if path.is_file() else None

    def ssl_context(self) -> ssl.SSLContext:
        """Trust only the fleet CA; present the certificate when the agent has one."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        context.load_verify_locations(cadata=self.ca_pem.decode("ascii"))
        if self.identity_path.is_file():
            context.load_cert_chain(self.identity_path)
        return context

    def new_csr(self) -> tuple[bytes, str]:
        """A fresh key (PEM, kept local) and a CSR for it."""
        from fleetplane.security.csr import build_csr
        from fleetplane.security.keys import generate_private_key, private_key_pem
        from fleetplane.security.spiffe import SpiffeId

        key = generate_private_key()
        csr = build_csr(key, SpiffeId(_fleet_of(self.ca_pem), self.site, self.agent_id))
        return private_key_pem(key), csr.decode("ascii")

    def store(self, key_pem: bytes, answer: dict[str, Any], now: datetime) -> Certificate:
        certificate = answer["certificate"].encode("ascii")
        write_atomically(self.identity_path, certificate + key_pem, mode=0o600)
        write_atomically(
            self.data_dir / META_FILE,
            json.dumps({"issuedAt": now.isoformat(), "site": self.site,
                        "agentId": self.agent_id,
                        "notAfter": _not_after(certificate).isoformat()}).encode(),
            mode=0o600,
        )
        renewal = answer.get("renewalCredential")
        if isinstance(renewal, str):
            write_atomically(self.data_dir / RENEWAL_FILE, renewal.encode(), mode=0o600)
        stored = self.certificate()
        assert stored is not None
        return stored


class Enroller:
    """Keeps the identity valid: the one call the agent's loop makes is :meth:`ensure`."""

    def __init__(self, server: str, identity: Identity, bootstrap_token: str | None,
                 timeout: float = 10.0) -> None:
        self.server = server.rstrip("/")
        self.identity = identity
        self.bootstrap_token = bootstrap_token
        self.timeout = timeout

    async def ensure(self, now: datetime | None = None) -> bool:
        """Enrol, rotate or re-enrol as needed; True when the certificate changed."""
        moment = now or datetime.now(UTC)
        current = self.identity.certificate()
        if current is None:
            await self.enrol(moment)
            return True
        if current.expired(moment):
            await self.reenrol(moment)
            return True
        if moment >= current.half_life():
            try:
                await self.rotate(moment)
            except EnrolmentError as error:
                # The server may think the certificate is already dead (clock skew, revocation).
                log.warning("rotation refused (%s); re-enrolling with the renewal credential",
                            error)
                await self.reenrol(moment)
            return True
        return False

    async def enrol(self, now: datetime) -> None:
        if not self.bootstrap_token:
            raise EnrolmentError(
                f"agent {self.identity.agent_id} of site {self.identity.site} has no certificate "
                f"in {self.identity.data_dir}: pass --bootstrap-token (create one with "
                f"`fleetplane site bootstrap-token {self.identity.site}`)"
            )
        key, csr = self.identity.new_csr()
        body = {"token": self.bootstrap_token, "csr": csr, "agentId": self.identity.agent_id,
                "agentVersion": __version__}
        answer = await self._post("/agent/v1/enrol", body, with_certificate=False)
        self._check_site(answer)
        self.identity.store(key, answer, now)
        log.info("enrolled as %s/%s", self.identity.site, self.identity.agent_id)

    async def rotate(self, now: datetime) -> None:
        key, csr = self.identity.new_csr()
        answer = await self._post("/agent/v1/certificate", {"csr": csr}, with_certificate=True)
        self.identity.store(key, answer, now)
        log.info("certificate rotated; valid until %s", answer.get("notAfter"))

    async def reenrol(self, now: datetime) -> None:
        credential = self.identity.renewal_credential()
        if credential is None:
            raise EnrolmentError(
                f"the certificate in {self.identity.identity_path} expired and there is no "
                "renewal credential: enrol again with a new --bootstrap-token"
            )
        key, csr = self.identity.new_csr()
        answer = await self._post(
            "/agent/v1/reenrol",
            {"renewalCredential": credential, "csr": csr, "agentVersion": __version__},
            with_certificate=False,
        )
        self.identity.store(key, answer, now)
        log.info("re-enrolled with the renewal credential; valid until %s", answer.get("notAfter"))

    def _check_site(self, answer: dict[str, Any]) -> None:
        if answer.get("site") != self.identity.site:
            raise EnrolmentError(
                f"the bootstrap token is for site {answer.get('site')!r}, but this agent runs "
                f"--site {self.identity.site}: use a token created for {self.identity.site}"
            )

    async def _post(self, path: str, body: dict[str, Any], *, with_certificate: bool
                    ) -> dict[str, Any]:
        context = self.identity.ssl_context() if with_certificate else _anonymous(self.identity)
        async with httpx.AsyncClient(verify=context, timeout=self.timeout) as client:
            response = await client.post(self.server + path, json=body)
        if response.status_code != 200:
            raise EnrolmentError(
                f"{path} at {self.server} answered {response.status_code}: {_message(response)}"
            )
        answer: dict[str, Any] = response.json()
        return answer


def _not_after(certificate_pem: bytes) -> datetime:
    from cryptography import x509

    return x509.load_pem_x509_certificate(certificate_pem).not_valid_after_utc


def _fleet_of(ca_pem: bytes) -> str:
    """The trust domain the fleet CA names in its SAN (spiffe://<fleet>)."""
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(ca_pem)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    for uri in names.value.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("spiffe://"):
            return uri.removeprefix("spiffe://").split("/")[0]
    raise EnrolmentError("the CA certificate names no spiffe:// trust domain: is it the fleet CA?")


def _anonymous(identity: Identity) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_verify_locations(cadata=identity.ca_pem.decode("ascii"))
    return context


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text
