"""JSON logs in Cloud Logging's structured format, each line carrying the current correlation id.

Cloud Functions (2nd gen) parse one JSON object per stdout line: `severity` and `message` are
understood natively, and every other key lands in `jsonPayload`, where operators can filter on
`jsonPayload.correlation_id` to follow one escrow from chain log to alert.

Personal data never reaches a log line: engines hide statement parameters, and a database error's own
message (which can quote the offending value, as in `invalid input syntax for type integer: "..."`)
is replaced in logged tracebacks by its SQLSTATE and the statement text.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)
_configured = False

# Attributes every LogRecord has; anything else passed via `extra=` becomes a JSON field.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class CloudLoggingFormatter(logging.Formatter):
    """Formats a record as one JSON object in Cloud Logging's structured-log shape."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        correlation_id = _correlation_id.get()
        if correlation_id:
            entry["correlation_id"] = correlation_id
            entry["logging.googleapis.com/labels"] = {"correlation_id": correlation_id}  # type: ignore[assignment]
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = format_exception_safely(record.exc_info[1])
        return json.dumps(entry, default=str)


def _is_database_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("sqlalchemy", "pg8000")


def _safe_message(exc: BaseException) -> str:
    """The exception's message, or for a database error its SQLSTATE and statement without any values."""
    if not _is_database_error(exc):
        return str(exc)
    orig = getattr(exc, "orig", exc)
    fields = orig.args[0] if getattr(orig, "args", None) and isinstance(orig.args[0], dict) else {}
    statement = " ".join(str(getattr(exc, "statement", "") or "").split())[:500]
    return f"SQLSTATE {fields.get('C', '?')} (message withheld: it may quote values); statement: {statement}"


def format_exception_safely(exc: BaseException) -> str:
    """A traceback of the exception and its causes, with database errors' messages withheld."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append("Traceback (most recent call last):\n" + "".join(traceback.format_tb(current.__traceback__))
                     + f"{type(current).__module__}.{type(current).__qualname__}: {_safe_message(current)}")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n\nCaused by:\n".join(parts)


def configure_logging(level: int = logging.INFO) -> None:
    """Route the root logger to stdout as structured JSON (idempotent)."""
    global _configured
    if _configured:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _configured = True


@contextlib.contextmanager
def correlation(correlation_id: str | None) -> Iterator[None]:
    """Attach a correlation id to every log line written inside the block."""
    token = _correlation_id.set(correlation_id)
    try:
        yield
    finally:
        _correlation_id.reset(token)
