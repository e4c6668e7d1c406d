"""The HTTP client of the control plane, and where it finds the server and the token.

Server URL and token come from, in order: command-line flags, the
environment (``FLEETPLANE_SERVER``, ``FLEETPLANE_TOKEN``,
``FLEETPLANE_CA_CERT``), the config file
``$XDG_CONFIG_HOME/fleetplane/config.yaml`` (default ``~/.config/…``) with
keys ``server``, ``token``, ``certificateAuthority``, and finally
``http://127.0.0.1:8080``. Every non-2xx answer becomes a typed
:class:`ClientError` whose message is the server's explanation.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetplane.errors import FleetplaneError

if TYPE_CHECKING:
    # httpx loads when a client is made: every CLI command imports this module.
    import httpx

DEFAULT_SERVER = "http://127.0.0.1:8080"
SERVER_ENV = "FLEETPLANE_SERVER"
TOKEN_ENV = "FLEETPLANE_TOKEN"
CA_ENV = "FLEETPLANE_CA_CERT"
API = "/apis/fleetplane/v1"


class ClientError(FleetplaneError):
    """The server refused or could not be reached; ``status`` is the HTTP code (0: no answer)."""

    status = 0

    def __init__(self, message: str, body: dict[str, Any] | None = None) -> None:
        self.body = body or {}
        super().__init__(message)


class Unreachable(ClientError):
    pass


class BadRequest(ClientError):
    status = 400


class Unauthorized(ClientError):
    status = 401


class Forbidden(ClientError):
    status = 403


class NotFoundError(ClientError):
    status = 404


class ConflictError(ClientError):
    status = 409


class Gone(ClientError):
    status = 410


class TooLarge(ClientError):
    status = 413


class Invalid(ClientError):
    status = 422


class RateLimited(ClientError):
    status = 429


class ServerError(ClientError):
    status = 500


_BY_STATUS: dict[int, type[ClientError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFoundError,
        ConflictError,
        Gone,
        TooLarge,
        Invalid,
        RateLimited,
    )
}


@dataclass(frozen=True)
class Connection:
    server: str
    token: str | None
    ca_cert: Path | None = None


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fleetplane" / "config.yaml"


def _config_file() -> dict[str, Any]:
    path = config_path()
    if not path.is_file():
        return {}
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as error:
        raise ClientError(f"{path}: cannot read the client config: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ClientError(f"{path}: the client config must be a mapping (server:, token:)")
    return data


def resolve(server: str | None, token: str | None, ca_cert: Path | None = None) -> Connection:
    """Flags win over the environment, which wins over the config file."""
    config: dict[str, Any] | None = None

    def pick(flag: Any, env: str, key: str) -> Any:
        nonlocal config
        if flag:
            return flag
        if os.environ.get(env):
            return os.environ[env]
        if config is None:
            config = _config_file()
        return config.get(key)

    url = str(pick(server, SERVER_ENV, "server") or DEFAULT_SERVER).rstrip("/")
    secret = pick(token, TOKEN_ENV, "token")
    ca = pick(ca_cert, CA_ENV, "certificateAuthority")
    return Connection(url, str(secret).strip() if secret else None, Path(ca) if ca else None)


class ControlClient:
    """Synchronous client; one per command invocation."""

    def __init__(self, connection: Connection, *, timeout: float = 30.0) -> None:
        self.connection = connection
        headers = {"User-Agent": "fleetplane-cli"}
        if connection.token:
            headers["Authorization"] = f"Bearer {connection.token}"
        import httpx

        verify: ssl.SSLContext | bool = True
        if connection.ca_cert is not None:
            verify = ssl.create_default_context(cafile=str(connection.ca_cert))
        self._http = httpx.Client(
            base_url=connection.server, headers=headers, timeout=timeout, verify=verify
        )

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()

    # ------------------------------------------------------------ requests

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise self._unreachable(error) from None
        return self._result(response)

    def stream_lines(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Decoded NDJSON lines of a streaming GET (a watch)."""
        import httpx

        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    self._result(response)
                for text in response.iter_lines():
                    if text.strip():
                        yield json.loads(text)
        except httpx.HTTPError as error:
            raise self._unreachable(error) from None

    def _unreachable(self, error: httpx.HTTPError) -> Unreachable:
        return Unreachable(
            f"cannot reach the control plane at {self.connection.server}: {error} "
            f"(is `fleetplane serve` running? set --server or {SERVER_ENV})"
        )

    def _result(self, response: httpx.Response) -> Any:
        if response.status_code < 400:
            if response.headers.get("content-type", "").startswith("application/json"):
                return response.json()
            return response.text
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text or response.reason_phrase}
        if not isinstance(body, dict):
            body = {"message": str(body)}
        cls = _BY_STATUS.get(response.status_code)
        if cls is None:
            cls = ServerError if response.status_code >= 500 else ClientError
        message = str(body.get("message") or response.reason_phrase)
        if response.status_code == 401 and not self.connection.token:
            message += (
                f" (no token given: pass --token, set {TOKEN_ENV} or add token: to "
                f"{config_path()})"
            )
        if response.status_code == 429:
            message += f" (Retry-After: {response.headers.get('retry-after', '?')} s)"
        raise cls(f"{message} [HTTP {response.status_code}]", body)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=_clean(params))


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


# Options every client command takes (typer reads them as parameter defaults).
def _typer_options() -> tuple[Any, Any, Any]:
    import typer

    return (
        typer.Option(None, "--server", help=f"Control plane URL (else ${SERVER_ENV}, config)."),
        typer.Option(None, "--token", help=f"API token (else ${TOKEN_ENV}, config file)."),
        typer.Option(None, "--ca-cert", help=f"CA bundle for the server's TLS (else ${CA_ENV})."),
    )


SERVER_OPTION, TOKEN_OPTION, CA_OPTION = _typer_options()


def connect(server: str | None, token: str | None, ca_cert: Path | None) -> ControlClient:
    return ControlClient(resolve(server, token, ca_cert))
