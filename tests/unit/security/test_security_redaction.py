"""Log redaction and pseudonymisation."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest

from fleetplane.security import (
    Key,
    Pseudonymizer,
    RedactingFilter,
    SpiffeId,
    build_csr,
    create_bootstrap_token,
    create_token,
    generate_private_key,
    install_redaction,
    private_key_pem,
    redact,
)
from fleetplane.security.redaction import MASK


def test_fleetplane_tokens_keep_their_id() -> None:
    api, record = create_token("alice", "admin", timedelta(hours=1))
    boot, boot_record = create_bootstrap_token("s")
    text = redact(f"login with {api} then enrol with {boot}.")
    assert text == (
        f"login with fp_{record.token_id}_{MASK} then enrol with fpb_{boot_record.token_id}_{MASK}."
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOi.abc-def_ghi", f"Authorization: Bearer {MASK}"),
        ("authorization: basic YWxpY2U6c2VjcmV0", f"authorization: basic {MASK}"),
        ("password=hunter22 user=alice", f"password={MASK} user=alice"),
        ('{"db_password": "p@ss w0rd", "user": "a"}', f'{{"db_password": {MASK}, "user": "a"}}'),
        ("GET /x?api_key=abc123&page=2", f"GET /x?api_key={MASK}&page=2"),
        ("client_secret: 'xyz'", f"client_secret: {MASK}"),
        ("FLEETPLANE_SECRET_KEY=abc:Zm9v", f"FLEETPLANE_SECRET_KEY={MASK}"),
    ],
)
def test_patterns(line: str, expected: str) -> None:
    assert redact(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "token_id=abcd secret_hash=sha256:00ff",
        "the bootstrap token for site store-012 expired",
        "secret 'db' does not decrypt under key 'k1'",
        "certificate serial 1f for spiffe://acme/site/s/agent/a",
    ],
)
def test_harmless_lines_are_left_alone(line: str) -> None:
    assert redact(line) == line


def test_private_keys_but_not_certificates_or_csrs() -> None:
    key = generate_private_key()
    pem = private_key_pem(key).decode()
    encrypted = private_key_pem(key, b"pass").decode()
    csr = build_csr(key, SpiffeId("acme", "s", "a")).decode()
    text = redact(f"key:\n{pem}\nencrypted:\n{encrypted}\ncsr:\n{csr}")
    body_lines = [line for line in pem.splitlines() if not line.startswith("-----")]
    assert not any(line in text for line in body_lines)
    assert "ENCRYPTED PRIVATE KEY-----" + MASK in text
    assert csr in text


def test_truncated_private_key_is_masked_to_the_end() -> None:
    pem = private_key_pem(generate_private_key()).decode()
    cut = pem[: len(pem) // 2]
    expected = f"oops -----BEGIN PRIVATE KEY-----{MASK}-----END PRIVATE KEY-----"
    assert redact("oops " + cut) == expected


def test_literals() -> None:
    assert redact("key is s3cr3t-value!", ["s3cr3t-value"]) == f"key is {MASK}!"
    # Very short literals would shred the log; they are ignored.
    assert redact("a b c", ["a"]) == "a b c"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger = logging.getLogger("fleetplane.test.redaction")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.removeHandler(handler)


def test_filter_redacts_messages_args_and_tracebacks(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    install_redaction(logger, literals=["extra-literal-secret"])
    install_redaction(logger)
    assert sum(isinstance(f, RedactingFilter) for f in logger.handlers[0].filters) == 1
    token, _ = create_token("alice", "viewer", timedelta(hours=1))
    secret_part = token.rsplit("_", 1)[1]
    logger.info("request with %s and %s", f"Bearer {token}", "extra-literal-secret")
    try:
        raise RuntimeError(f"failed for password={secret_part}")
    except RuntimeError:
        logger.exception("boom %d", 1)
    output = stream.getvalue()
    assert secret_part not in output
    assert "extra-literal-secret" not in output
    assert "INFO request with Bearer [REDACTED]" in output
    assert "ERROR boom 1" in output
    assert "RuntimeError: failed for password=[REDACTED]" in output


def test_filter_survives_bad_format_arguments(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.handlers[0].addFilter(RedactingFilter())
    logger.info("password=hunter22 %s %s", "only one")
    output = stream.getvalue()
    assert "hunter22" not in output
    assert "password=[REDACTED] %s %s [log arguments did not match: ('only one',)]" in output


# --- pseudonymisation ---------------------------------------------------------------


def test_pseudonyms_are_stable_per_key_and_differ_across_keys() -> None:
    first = Pseudonymizer(Key("p", b"\x01" * 32))
    again = Pseudonymizer(b"\x01" * 32)
    other = Pseudonymizer(b"\x02" * 32)
    alice = first.pseudonym("alice@example.com")
    assert alice.startswith("ps_") and len(alice) == 3 + 26
    assert alice == again.pseudonym("alice@example.com")
    assert alice != first.pseudonym("bob@example.com")
    assert alice != other.pseudonym("alice@example.com")
    assert "alice" not in alice


def test_pseudonymize_fields() -> None:
    pseudonymizer = Pseudonymizer(b"\x01" * 32)
    record = {"user": "alice", "client_ip": "10.0.0.7", "latency_ms": 12, "device": None}
    result = pseudonymizer.pseudonymize_fields(record, {"user", "client_ip", "device"})
    assert result["user"] == pseudonymizer.pseudonym("alice")
    assert result["client_ip"] == pseudonymizer.pseudonym("10.0.0.7")
    assert (result["latency_ms"], result["device"]) == (12, None)
    assert record["user"] == "alice"


def test_short_pseudonymisation_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymizer(b"short")


def test_uvicorn_access_log_keeps_its_argument_shape() -> None:
    from uvicorn.logging import AccessFormatter

    token, record_ = create_token("alice", "viewer", timedelta(hours=1))
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/apis/fleetplane/v1/sites?api_key={token}", "1.1", 200),
        None,
    )
    RedactingFilter().filter(record)
    assert isinstance(record.args, tuple) and len(record.args) == 5
    line = AccessFormatter(
        '%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False
    ).format(record)
    assert (
        line
        == '127.0.0.1:5000 - "GET /apis/fleetplane/v1/sites?api_key=[REDACTED] HTTP/1.1" 200 OK'
    )
    assert record_.token_id not in line


def test_secret_across_template_and_argument_is_masked() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "password=%s", ("hunter22",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == f"password={MASK}"


def test_clean_records_are_left_untouched() -> None:
    args = ("store-1", 3)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "site %s rev %d", args, None)
    RedactingFilter().filter(record)
    assert record.args is args and record.msg == "site %s rev %d"
