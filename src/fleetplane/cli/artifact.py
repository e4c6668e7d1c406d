"""``fleetplane artifact push|list|get|delete|gc``: workload releases, stored by sha256.

``push DIR`` packs the directory into a deterministic .tar.gz (a temporary
file, so memory stays flat for big releases), skips the upload when the
server already holds that digest, else sends it in parts below the API's
body limit, and records name+version → digest. The digest goes to stdout.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import typer

from fleetplane.cli.client import (
    CA_OPTION,
    SERVER_OPTION,
    TOKEN_OPTION,
    ControlClient,
    NotFoundError,
    connect,
)
from fleetplane.cli.columns import print_columns
from fleetplane.cli.main import app
from fleetplane.cli.output import OUTPUT_OPTION, OutputFormat, emit_document, stderr, user_errors

API = "/api/v1/artifacts"
PART_BYTES = 1024 * 1024

artifact_app = typer.Typer(help="Push and inspect workload releases (artifacts).",
                           no_args_is_help=True)
app.add_typer(artifact_app, name="artifact")
DIRECTORY_ARGUMENT = typer.Argument(..., help="The directory holding the release's files.")
NAME_ARGUMENT = typer.Argument(..., help="Artifact name.")
VERSION_ARGUMENT = typer.Argument(..., help="Artifact version.")


@artifact_app.command("push")
@user_errors
def push(
    directory: Path = DIRECTORY_ARGUMENT,
    name: str = typer.Option(..., "--name", help="Artifact name (what Workloads name)."),
    version: str = typer.Option(..., "--version", help="Version; a name+version is immutable."),
    output: OutputFormat = OUTPUT_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """Pack DIR deterministically, upload it and record NAME:VERSION; prints the digest."""
    from fleetplane.artifacts.archive import pack

    with tempfile.TemporaryFile() as archive:
        files = pack(directory, archive)
        digest, size = _digest(archive)
        with connect(server, token, ca_cert) as client:
            upload_id = None if _server_has(client, digest) else _upload(client, archive, size)
            pushed = client.request("POST", API, json={
                "name": name, "version": version, "digest": digest, "uploadId": upload_id,
                "files": [entry.to_json() for entry in files],
            })
    if output is not OutputFormat.table:
        emit_document(pushed, output)
        return
    stderr.print(f"pushed {name}:{version} ({len(files)} files, {size} bytes"
                 f"{', already stored' if upload_id is None else ''})", highlight=False,
                 markup=False)
    print(pushed["digest"])


def _digest(archive: Any) -> tuple[str, int]:
    archive.seek(0)
    hasher = hashlib.sha256()
    size = 0
    while block := archive.read(PART_BYTES):
        hasher.update(block)
        size += len(block)
    return "sha256:" + hasher.hexdigest(), size


def _server_has(client: ControlClient, digest: str) -> bool:
    try:
        client.request("HEAD", f"{API}/blobs/{digest}")
    except NotFoundError:
        return False
    return True


def _upload(client: ControlClient, archive: Any, size: int) -> str:
    begun = client.request("POST", f"{API}/uploads")
    upload_id: str = begun["uploadId"]
    part_bytes = min(PART_BYTES, int(begun.get("partBytes", PART_BYTES)))
    archive.seek(0)
    seq = 0
    while block := archive.read(part_bytes):
        client.request("PUT", f"{API}/uploads/{upload_id}/parts/{seq}", content=block,
                       headers={"Content-Type": "application/octet-stream"})
        seq += 1
    return upload_id


@artifact_app.command("list")
@user_errors
def list_artifacts(
    name: str | None = typer.Option(None, "--name", help="Only versions of this artifact."),
    output: OutputFormat = OUTPUT_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """List pushed artifacts: name, version, digest, size, when and by whom."""
    with connect(server, token, ca_cert) as client:
        listing = client.get(API, name=name)
    if output is not OutputFormat.table:
        emit_document(listing, output)
        return
    rows = [[item["name"], item["version"], item["digest"][:19], str(item["size"]),
             item["createdAt"][:19], item["createdBy"]] for item in listing["items"]]
    print_columns(("NAME", "VERSION", "DIGEST", "SIZE", "PUSHED", "BY"), rows)


@artifact_app.command("get")
@user_errors
def get(
    name: str = NAME_ARGUMENT,
    version: str = VERSION_ARGUMENT,
    output: OutputFormat = OUTPUT_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """One artifact: its digest, size and the files in it."""
    with connect(server, token, ca_cert) as client:
        found = client.get(f"{API}/{name}/{version}")
    if output is not OutputFormat.table:
        emit_document(found, output)
        return
    print(f"{found['name']}:{found['version']}  {found['digest']}  {found['size']} bytes")
    print_columns(("PATH", "SIZE", "SHA256"),
                  [[f["path"], str(f["size"]), f["sha256"]] for f in found["files"]])


@artifact_app.command("delete")
@user_errors
def delete(
    name: str = NAME_ARGUMENT,
    version: str = VERSION_ARGUMENT,
    output: OutputFormat = OUTPUT_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """Delete a release no Workload runs; its bytes go once no site's desired state names them."""
    with connect(server, token, ca_cert) as client:
        removal = client.request("DELETE", f"{API}/{name}/{version}")
    _report_removal(removal, output, f"deleted {name}:{version}")


@artifact_app.command("gc")
@user_errors
def collect_garbage(
    output: OutputFormat = OUTPUT_OPTION,
    server: str | None = SERVER_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_cert: Path | None = CA_OPTION,
) -> None:
    """Remove stored bytes no release and no site names, and uploads never committed."""
    with connect(server, token, ca_cert) as client:
        removal = client.request("POST", f"{API}/gc")
    _report_removal(removal, output, "collected")


def _report_removal(removal: dict[str, Any], output: OutputFormat, done: str) -> None:
    if output is not OutputFormat.table:
        emit_document(removal, output)
        return
    freed = removal["bytesFreed"]
    print(f"{done}: {len(removal['blobsRemoved'])} blob(s), {freed} bytes freed, "
          f"{removal['uploadsDropped']} abandoned upload(s) dropped")
    for digest in removal["blobsKeptForSites"]:
        print(f"kept {digest}: a site's desired state still names it; "
              "run `fleetplane artifact gc` once the sites have moved on")
