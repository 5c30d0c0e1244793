"""JSON logs in Cloud Logging's structured format, each line carrying the current correlation id.

Cloud Functions (2nd gen) parse one JSON object per stdout line: `severity` and `message` are
understood natively, and every other key lands in `jsonPayload`, where operators can filter on
`jsonPayload.correlation_id` to follow one escrow from chain log to alert.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
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
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


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
