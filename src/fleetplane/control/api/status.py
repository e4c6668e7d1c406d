"""Every error the API answers, as a Kubernetes-style ``Status`` body.

``{"kind": "Status", "status": "Failure", "code": 409, "reason": "Conflict",
"message": "...", "details": {"kind": ..., "name": ..., "causes": [...]}}``;
causes carry the field path, the position in the uploaded YAML, and a hint.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleetplane.control.store.errors import (
    AlreadyExists,
    Conflict,
    Expired,
    NotEmpty,
    NotFound,
    SecretsUnavailable,
)
from fleetplane.errors import Problem, ValidationError
from fleetplane.security.errors import DecryptionError, TokenError

log = logging.getLogger(__name__)

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class ApiError(Exception):
    """An error answer with a status code; raise it anywhere in a request."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        problems: Sequence[Problem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = dict(details or {})
        if problems:
            self.details["causes"] = [cause(p) for p in problems]
        self.headers = headers


def cause(problem: Problem) -> dict[str, Any]:
    out: dict[str, Any] = {"message": problem.message}
    if problem.field_path:
        out["field"] = problem.field_path
    if problem.position is not None:
        out["position"] = str(problem.position)
        if problem.position.line is not None:
            out["line"] = problem.position.line
        if problem.position.column is not None:
            out["column"] = problem.position.column
    if problem.hint:
        out["hint"] = problem.hint
    return out


def status_body(
    code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        status_body(error.code, error.message, error.reason, error.details),
        status_code=error.code,
        headers=error.headers,
    )


def invalid(problems: Sequence[Problem], *, code: int = 422, what: str = "") -> ApiError:
    """A 4xx listing every problem, the message the same text `fleetplane validate` prints."""
    message = str(ValidationError(list(problems))) if problems else "invalid request"
    if what:
        message = f"{what}: {message}"
    return ApiError(code, message, problems=problems)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(ValidationError)
    async def _validation(_request: Request, error: ValidationError) -> JSONResponse:
        return error_response(invalid(error.problems))

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, error: NotFound) -> JSONResponse:
        return error_response(
            ApiError(404, str(error), details={"kind": error.kind, "name": error.name})
        )

    @app.exception_handler(AlreadyExists)
    async def _exists(_request: Request, error: AlreadyExists) -> JSONResponse:
        details = {"kind": error.kind, "name": error.name}
        return error_response(ApiError(409, str(error), reason="AlreadyExists", details=details))

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, error: Conflict) -> JSONResponse:
        details = {
            "kind": error.kind,
            "name": error.name,
            "expectedResourceVersion": str(error.expected),
            "currentResourceVersion": str(error.actual),
        }
        return error_response(ApiError(409, str(error), details=details))

    @app.exception_handler(Expired)
    async def _expired(_request: Request, error: Expired) -> JSONResponse:
        return error_response(ApiError(410, str(error), details={"oldest": str(error.oldest)}))

    @app.exception_handler(NotEmpty)
    async def _not_empty(_request: Request, error: NotEmpty) -> JSONResponse:
        return error_response(ApiError(409, str(error), reason="NotEmpty"))

    @app.exception_handler(SecretsUnavailable)
    async def _no_key(_request: Request, error: SecretsUnavailable) -> JSONResponse:
        return error_response(ApiError(400, str(error), reason="SecretsKeyMissing"))

    @app.exception_handler(DecryptionError)
    async def _decryption(_request: Request, error: DecryptionError) -> JSONResponse:
        log.error("secret decryption failed: %s", error)
        return error_response(ApiError(500, str(error)))

    @app.exception_handler(TokenError)
    async def _token(_request: Request, error: TokenError) -> JSONResponse:
        return error_response(
            ApiError(401, str(error), headers={"WWW-Authenticate": "Bearer"})
        )

    @app.exception_handler(RequestValidationError)
    async def _request_validation(
        _request: Request, error: RequestValidationError
    ) -> JSONResponse:
        problems = [
            Problem(str(e.get("msg", "invalid")), field_path=_loc(e.get("loc", ())))
            for e in error.errors()
        ]
        return error_response(invalid(problems, code=400, what="invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(
            ApiError(error.status_code, str(error.detail), headers=dict(error.headers or {}))
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error while serving a request")
        return error_response(ApiError(500, f"internal error: {type(error).__name__}"))


def _loc(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)
