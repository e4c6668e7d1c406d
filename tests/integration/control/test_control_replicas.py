"""Two `fleetplane serve` replicas on one PostgreSQL, one of them over TLS.

Writes through either replica are seen by watches on the other (the version
poller), concurrent clients spread over both lose no update (versions are
handed out under a row lock), and neither log holds a secret.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from control_harness import (
    ServerProcess,
    create_database,
    create_schema,
    drop_database,
    require_postgres,
    start_server,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from manifests import image_document, secret_document
from typer.testing import CliRunner

from fleetplane.cli.main import app
from fleetplane.security.keyring import generate_key_text

V1 = "/apis/fleetplane/v1"
SECRET_VALUE = "s3cr3t-value-that-must-not-leak"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleetplane test")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Replicas:
    plain: ServerProcess
    tls: ServerProcess
    ca: Path
    token: str

    def client(self, replica: ServerProcess) -> httpx.Client:
        verify: ssl.SSLContext | bool = True
        if replica is self.tls:
            verify = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(
            base_url=replica.url,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=verify,
            timeout=30,
        )


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    require_postgres()
    workdir = tmp_path_factory.mktemp("replicas")
    database = create_database()
    url = create_schema(database)
    cert, key = self_signed(workdir)
    env = {"FLEETPLANE_SECRETS_KEY": generate_key_text()}
    # Debug logging: the no-secrets-in-logs test must see everything the server says.
    plain = start_server(url, workdir, "--write-rate", "0", "--log-level", "debug", env=env)
    try:
        tls = start_server(
            url,
            workdir,
            "--write-rate",
            "0",
            "--log-level",
            "debug",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            env=env,
        )
    except Exception:
        plain.stop()
        raise
    yield Replicas(plain, tls, cert, plain.token)
    tls.stop()
    plain.stop()
    drop_database(database)


def test_only_the_first_replica_creates_the_admin_token_file_with_0600(
    replicas: Replicas,
) -> None:
    assert replicas.plain.token.startswith("fp_") and replicas.tls.token == ""
    token_files = list(Path(replicas.ca.parent).glob("admin-*.token"))
    assert len(token_files) == 1
    assert token_files[0].stat().st_mode & 0o777 == 0o600


def test_the_tls_replica_refuses_plain_http(replicas: Replicas) -> None:
    plain_url = replicas.tls.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain_url}/healthz", timeout=5)
    with replicas.client(replicas.tls) as client:
        assert client.get(f"{V1}/sites").status_code == 200


def test_the_cli_talks_to_the_tls_replica_with_its_ca(
    replicas: Replicas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    args = ["get", "sites", "--server", replicas.tls.url, "--token", replicas.token]
    assert CliRunner().invoke(app, [*args, "--ca-cert", str(replicas.ca)]).exit_code == 0
    untrusted = CliRunner().invoke(app, args)
    assert untrusted.exit_code == 1 and "cannot reach" in untrusted.output


def test_a_watch_on_one_replica_sees_writes_through_the_other(replicas: Replicas) -> None:
    events: list[dict[str, Any]] = []
    seen = threading.Event()

    with replicas.client(replicas.tls) as watcher:
        version = watcher.get(f"{V1}/nodeimages").json()["metadata"]["resourceVersion"]
        params = {"watch": "true", "resourceVersion": version, "timeoutSeconds": "30"}

        def read() -> None:
            with watcher.stream("GET", f"{V1}/nodeimages", params=params) as stream:
                for line in stream.iter_lines():
                    if line:
                        event = json.loads(line)
                        events.append(event)
                        if event["type"] == "ADDED":
                            seen.set()
                            return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        with replicas.client(replicas.plain) as writer:
            assert writer.post(f"{V1}/nodeimages", json=image_document("cross")).status_code == 201
        assert seen.wait(timeout=30)
        reader.join(timeout=30)
    added = [e for e in events if e["type"] == "ADDED"]
    assert added[0]["object"]["metadata"]["name"] == "cross"


def test_clients_spread_over_both_replicas_lose_no_update(replicas: Replicas) -> None:
    with replicas.client(replicas.plain) as client:
        doc = image_document("shared-counter")
        doc["metadata"]["annotations"] = {"count": "0"}
        assert client.post(f"{V1}/nodeimages", json=doc).status_code == 201
    clients, increments = 8, 5

    def work(index: int) -> None:
        replica = replicas.plain if index % 2 else replicas.tls
        with replicas.client(replica) as client:
            done = 0
            while done < increments:
                current = client.get(f"{V1}/nodeimages/shared-counter").json()
                annotations = current["metadata"]["annotations"]
                annotations["count"] = str(int(annotations["count"]) + 1)
                answer = client.put(f"{V1}/nodeimages/shared-counter", json=current)
                if answer.status_code == 409:
                    continue
                assert answer.status_code == 200, answer.text
                done += 1

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(clients)))
    with replicas.client(replicas.tls) as client:
        final = client.get(f"{V1}/nodeimages/shared-counter").json()
    assert final["metadata"]["annotations"]["count"] == str(clients * increments)


def test_no_secret_reaches_the_logs(replicas: Replicas) -> None:
    with replicas.client(replicas.plain) as client:
        created = client.post(f"{V1}/secrets", json=secret_document("leak", SECRET_VALUE))
        assert created.status_code == 201
        client.get(f"{V1}/secrets/leak")
        # A request that fails inside the server logs its error; it must stay clean too.
        client.post(f"{V1}/apply", content=f"kind: Secret\ndata: {SECRET_VALUE}\n: :")
    with replicas.client(replicas.tls) as client:
        shown = client.get(f"{V1}/secrets/leak").json()
        assert shown["spec"]["data"]["password"] == SECRET_VALUE
    plain_log, tls_log = replicas.plain.output(), replicas.tls.output()
    assert SECRET_VALUE not in plain_log and SECRET_VALUE not in tls_log
    # The admin token is printed once, by the replica that created it, and never logged.
    assert plain_log.count(replicas.token) == 1
    assert replicas.token not in tls_log
    assert os.environ.get("FLEETPLANE_SECRETS_KEY") is None
