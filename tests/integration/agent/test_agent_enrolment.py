"""Enrolment over real TLS: local key 0600, one-time token, rotation at half-life, re-enrolment."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from harness import AgentPort, wait_for

from fleetplane.agent.enrolment import Enroller, EnrolmentError, Identity


def _enroller(port: AgentPort, data_dir: Path, token: str | None, agent_id: str = "a1"
              ) -> Enroller:
    identity = Identity(data_dir, "store-1", agent_id, port.ca_file.read_bytes())
    return Enroller(port.url, identity, token)


def test_enrol_keeps_the_key_local_and_the_token_works_once(
    agent_port: AgentPort, tmp_path: Path
) -> None:
    token = agent_port.bootstrap_token("store-1")
    enroller = _enroller(agent_port, tmp_path / "a1", token)
    assert asyncio.run(enroller.ensure()) is True
    identity_file = tmp_path / "a1" / "identity.pem"
    assert stat.S_IMODE(identity_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a1" / "renewal").stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in identity_file.read_bytes()
    # Nothing to do while the certificate is young.
    assert asyncio.run(enroller.ensure()) is False
    # The certificate authenticates on the agent port (real mTLS).
    with httpx.Client(verify=enroller.identity.ssl_context()) as client:
        status = {"status": {"agentVersion": "0.1.0"}}
        answer = client.put(f"{agent_port.url}/apis/fleetplane/v1/sites/store-1/status",
                            json=status)
    assert answer.status_code == 200, answer.text
    second = _enroller(agent_port, tmp_path / "a2", token, agent_id="a2")
    with pytest.raises(EnrolmentError, match="401"):
        asyncio.run(second.ensure())


def test_rotation_at_half_life_and_reenrolment_after_expiry(tmp_path: Path) -> None:
    port = AgentPort(tmp_path, certificate_lifetime=timedelta(seconds=3))
    port.add_site("store-1")
    port.start()
    try:
        enroller = _enroller(port, tmp_path / "a1", port.bootstrap_token("store-1"))
        asyncio.run(enroller.ensure())
        first = enroller.identity.certificate()
        assert first is not None
        key_before = (tmp_path / "a1" / "identity.pem").read_bytes().split(b"-----END CERT")[1]
        wait_for(lambda: asyncio.run(enroller.ensure()), 10, "rotation at half-life")
        rotated = enroller.identity.certificate()
        assert rotated is not None and rotated.not_after > first.not_after
        key_after = (tmp_path / "a1" / "identity.pem").read_bytes().split(b"-----END CERT")[1]
        assert key_after != key_before, "rotation makes a fresh key"
        renewal_before = enroller.identity.renewal_credential()
        # Offline past expiry: the next ensure must re-enrol with the renewal credential.
        port.stop()
        wait_for(lambda: rotated.expired(datetime.now(UTC)), 10, "certificate expiry")
        port.start()
        assert asyncio.run(enroller.ensure()) is True
        renewed = enroller.identity.certificate()
        assert renewed is not None and renewed.not_after > rotated.not_after
        assert enroller.identity.renewal_credential() != renewal_before
    finally:
        port.stop()
        port.plane.close()
