"""Keep secrets out of logs: a ``logging.Filter`` that masks them.

Masks fleetplane credentials (keeping the non-secret ``fp_<id>_`` part, so
the log still says which token was used), ``Bearer``/``Basic``
authorisation values, PEM private keys, ``password=…``-style assignments
(also in JSON and query strings), and any literal values the server knows
to be secret (e.g. its encryption key text).

Install it on every handler (:func:`install_redaction`): filters attached
to a logger do not see records propagated from child loggers, handler
filters see everything the handler writes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "[REDACTED]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)",
            re.DOTALL,
        ),
        rf"-----BEGIN \1PRIVATE KEY-----{MASK}-----END \1PRIVATE KEY-----",
    ),
    (re.compile(r"\b(fp[br]?)_([a-z2-7]{16})_[a-z2-7]+"), rf"\1_\2_{MASK}"),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}"), rf"\1\2{MASK}"),
    (
        re.compile(
            r"(?i)\b([a-z0-9_-]*(?:password|passwd|secret(?:[_-]?key)?|api[_-]?key|"
            r"private[_-]?key|access[_-]?key|token|credential))"
            r"([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"'}]+)"
        ),
        rf"\1\2{MASK}",
    ),
)

# Literal secrets shorter than this are not masked: masking "a" or "1"
# everywhere would destroy the log without protecting anything.
_MIN_LITERAL = 8


def redact(text: str, literals: Iterable[str] = ()) -> str:
    """``text`` with every recognisable secret replaced by ``[REDACTED]``."""
    for literal in literals:
        if len(literal) >= _MIN_LITERAL:
            text = text.replace(literal, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message, exception text and stack with secrets masked.

    Where it can, it masks inside the %-arguments and keeps their shape,
    because some formatters read ``record.args`` themselves (uvicorn's access
    log unpacks a 5-tuple). Only when a secret spans the template and an
    argument does it replace the message with the masked text and drop the
    arguments.
    """

    def __init__(self, literals: Iterable[str] = ()) -> None:
        super().__init__()
        self._literals = tuple(literals)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            # Mismatched %-arguments. Keep the line (redacted, arguments shown
            # after it) rather than let the handler drop it with a logging
            # error: a lost log line hides the bug that produced it.
            message = None
        if message is None:
            template = self._redact(str(record.msg))
            shown = self._redact(repr(record.args))
            record.msg = f"{template} [log arguments did not match: {shown}]"
            record.args = None
        elif self._redact(message) != message:
            self._mask_message(record, message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        return True

    def _redact(self, text: str) -> str:
        return redact(text, self._literals)

    def _mask_message(self, record: logging.LogRecord, message: str) -> None:
        args = self._masked_args(record.args)
        if args is not None:
            try:
                candidate = str(record.msg) % args
            except (TypeError, ValueError, KeyError):
                candidate = None
            if candidate is not None and self._redact(candidate) == candidate:
                record.args = args
                return
        record.msg = self._redact(message)
        record.args = None

    def _masked_args(self, args: Any) -> tuple[Any, ...] | Mapping[str, Any] | None:
        if isinstance(args, tuple):
            return tuple(self._masked_value(value) for value in args)
        if isinstance(args, Mapping):
            return {key: self._masked_value(value) for key, value in args.items()}
        return None

    def _masked_value(self, value: Any) -> Any:
        text = str(value)
        masked = self._redact(text)
        return value if masked == text else masked


def install_redaction(logger: logging.Logger | None = None, literals: Iterable[str] = ()) -> None:
    """Add a :class:`RedactingFilter` to every handler of ``logger`` (default: root) lacking one.

    Call it after logging is configured (handlers added later are not covered).
    """
    target = logger or logging.getLogger()
    redacting = RedactingFilter(literals)
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(redacting)
