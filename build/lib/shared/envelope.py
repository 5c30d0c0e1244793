"""The event envelope every message on every topic carries, validated at the boundary.

    {"event_id", "event_type", "schema_version", "occurred_at", "correlation_id", "causation_id",
     "payload"}

The Pub/Sub attributes repeat `event_type`, `schema_version` and `correlation_id` so subscriptions can
filter and operators can read them without decoding the body.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.errors import InvalidEvent
from shared.events import CHAIN_EVENT_TYPES, validate_payload

ENVELOPE_FIELDS = (
    "event_id",
    "event_type",
    "schema_version",
    "occurred_at",
    "correlation_id",
    "causation_id",
    "payload",
)


def derive_event_id(cause_event_id: str, event_type: str, discriminator: str = "") -> str:
    """A stable id for an event derived from another, so a retried handler re-publishes the same id."""
    digest = hashlib.sha256(f"{cause_event_id}|{event_type}|{discriminator}".encode()).hexdigest()
    return f"{event_type}:{digest[:32]}"


def utc_iso(moment: datetime) -> str:
    """ISO-8601 in UTC with an explicit offset, the one timestamp format on the wire."""
    return moment.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class Envelope:
    """One event, as published and as consumed."""

    event_id: str
    event_type: str
    schema_version: int
    occurred_at: str
    correlation_id: str
    causation_id: str | None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        """What inboxes and outboxes deduplicate on: the event id, plus the block for chain logs.

        A reorganisation can put the same log (same `chain_id:tx_hash:log_index`) into another
        block; that re-inclusion is a new fact and must not be dropped as a duplicate.
        """
        if self.event_type in CHAIN_EVENT_TYPES:
            return f"{self.event_id}@{self.payload['block_hash']}"
        return self.event_id

    def to_json(self) -> dict[str, Any]:
        """The envelope as a JSON-ready dict."""
        return {name: getattr(self, name) for name in ENVELOPE_FIELDS}

    def to_bytes(self) -> bytes:
        """The message body."""
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True).encode()

    def attributes(self) -> dict[str, str]:
        """The Pub/Sub attributes that repeat the routing fields."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "schema_version": str(self.schema_version),
            "correlation_id": self.correlation_id,
        }

    @classmethod
    def from_json(cls, document: Any) -> Envelope:
        """Validate a decoded document as an envelope and its payload; raise InvalidEvent if it is not."""
        if not isinstance(document, dict):
            raise InvalidEvent("envelope is not a JSON object")
        event_id = document.get("event_id")
        missing = [name for name in ENVELOPE_FIELDS if name not in document]
        if missing:
            raise InvalidEvent(f"envelope lacks {', '.join(missing)}", event_id=_text_or_none(event_id))
        problems = []
        for name in ("event_id", "event_type", "occurred_at", "correlation_id"):
            if not isinstance(document[name], str) or not document[name]:
                problems.append(f"{name} must be a non-empty string")
        if document["causation_id"] is not None and not isinstance(document["causation_id"], str):
            problems.append("causation_id must be a string or null")
        version = document["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool):
            problems.append("schema_version must be an integer")
        if not isinstance(document["payload"], dict):
            problems.append("payload must be an object")
        if isinstance(document["occurred_at"], str):
            try:
                if datetime.fromisoformat(document["occurred_at"]).tzinfo is None:
                    problems.append("occurred_at must carry a UTC offset")
            except ValueError:
                problems.append("occurred_at is not ISO-8601")
        if problems:
            raise InvalidEvent("; ".join(problems), event_id=_text_or_none(event_id))
        envelope = cls(**{name: document[name] for name in ENVELOPE_FIELDS})
        validate_payload(envelope.event_type, envelope.schema_version, envelope.payload, envelope.event_id)
        return envelope

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Decode and validate a message body."""
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidEvent(f"message body is not JSON: {exc}") from exc
        return cls.from_json(document)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
