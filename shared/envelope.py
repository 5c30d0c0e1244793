"""The event envelope every message on every topic carries, validated at the boundary.

    {"event_id", "event_type", "schema_version", "occurred_at", "correlation_id", "causation_id",
     "payload"}

The Pub/Sub attributes repeat `event_type`, `schema_version` and `correlation_id` so subscriptions can
filter and operators can read them without decoding the body.

Before any field is read, a body is refused whole when it is larger than MAX_MESSAGE_BYTES, nested
deeper than MAX_NESTING (shared/text.py), or holds a string with a NUL byte or an unpaired surrogate
anywhere (PostgreSQL text cannot store either, and neither is ever meant). The payload then becomes its
canonical form (see shared/events.py): consumers never see the spelling a producer happened to use.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import msgspec

from shared.chain.escrow_logs import chain_log_event_id, removal_event_id
from shared.errors import InvalidEvent
from shared.events import CHAIN_EVENT_TYPES, MAX_ID_LENGTH, Payload, timestamp, validate_payload
from shared.text import MAX_NESTING, too_deep, unstorable_text

Model = TypeVar("Model", bound=Payload)

ENVELOPE_FIELDS = (
    "event_id",
    "event_type",
    "schema_version",
    "occurred_at",
    "correlation_id",
    "causation_id",
    "payload",
)


# The largest body any producer writes is a few kilobytes; anything near this is not ours.
MAX_MESSAGE_BYTES = 64 * 1024


def derive_event_id(cause_event_id: str, event_type: str, discriminator: str = "") -> str:
    """A stable id for an event derived from another, so a retried handler re-publishes the same id."""
    digest = hashlib.sha256(f"{cause_event_id}|{event_type}|{discriminator}".encode()).hexdigest()
    return f"{event_type}:{digest[:32]}"


def canonical_json(document: Any) -> str:
    """JSON text, compact with sorted keys: the one way an envelope is written on the wire."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


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

    def typed(self, model: type[Model]) -> Model:
        """The payload as its typed model (shared/events.py): what handlers read, attribute by attribute.

        Consumers validated and canonicalised the payload on the way in, so this cannot fail for a
        consumed event; an envelope built by hand is held to the same model. Validated once per model:
        a handler reads it in several places (settle's one event: three).
        """
        models = self.__dict__.setdefault("_typed_payloads", {})
        if model not in models:
            try:
                models[model] = msgspec.convert(self.payload, model, strict=True)
            except ValueError as exc:
                raise InvalidEvent(f"{self.event_type}: payload is not a {model.__name__}",
                                   event_id=self.event_id) from exc
        return cast(Model, models[model])

    def to_json(self) -> dict[str, Any]:
        """The envelope as a JSON-ready dict."""
        return {name: getattr(self, name) for name in ENVELOPE_FIELDS}

    @functools.cached_property
    def canonical_json(self) -> str:
        """The envelope as JSON text, compact with sorted keys: the message body, and what a stored
        envelope is serialized back to on a republish. Built once per envelope (relay stores it twice and
        publishes it: serializing 10k envelopes thrice was a tenth of a backfill tick)."""
        return canonical_json(self.to_json())

    def to_bytes(self) -> bytes:
        """The message body."""
        return self.canonical_json.encode()

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
            elif len(document[name]) > MAX_ID_LENGTH:
                problems.append(f"{name} must be at most {MAX_ID_LENGTH} characters")
        causation = document["causation_id"]
        if causation is not None and (not isinstance(causation, str) or len(causation) > MAX_ID_LENGTH):
            problems.append(f"causation_id must be null or a string of at most {MAX_ID_LENGTH} characters")
        version = document["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool):
            problems.append("schema_version must be an integer")
        if not isinstance(document["payload"], dict):
            problems.append("payload must be an object")
        if isinstance(document["occurred_at"], str):
            try:
                timestamp(document["occurred_at"])
            except ValueError as exc:
                problems.append(f"occurred_at {exc}")
        unknown = sorted(set(document) - set(ENVELOPE_FIELDS))
        if unknown:
            problems.append(f"unknown envelope fields {', '.join(unknown)}")
        if problems:
            raise InvalidEvent("; ".join(problems), event_id=_text_or_none(event_id))
        payload = validate_payload(document["event_type"], version, document["payload"], document["event_id"])
        if document["event_type"] in CHAIN_EVENT_TYPES:
            # The id says where the log sits on chain, in one spelling: a variant is a forgery.
            expected = chain_log_event_id(payload["chain_id"], payload["tx_hash"], payload["log_index"])
            if payload["removed"]:
                expected = removal_event_id(expected)
            if event_id != expected:
                raise InvalidEvent(f"event_id of a chain log must be {expected}", event_id=event_id)
        return cls(**{name: document[name] for name in ENVELOPE_FIELDS if name != "payload"}, payload=payload)

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Decode and validate a message body."""
        if len(data) > MAX_MESSAGE_BYTES:
            raise InvalidEvent(f"message body of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidEvent(f"message body is not JSON: {exc}") from exc
        except RecursionError as exc:
            raise InvalidEvent("message body is nested too deeply") from exc
        if too_deep(document):
            raise InvalidEvent(f"message body is nested too deeply (more than {MAX_NESTING} levels)")
        unstorable = unstorable_text(document)
        if unstorable:
            where, problem = unstorable
            raise InvalidEvent(f"message body: {where} {problem}", event_id=_text_or_none(_get(document, "event_id")))
        return cls.from_json(document)


def _text_or_none(value: Any) -> str | None:
    return value[:MAX_ID_LENGTH] if isinstance(value, str) and not unstorable_text(value) else None


def _get(document: Any, name: str) -> Any:
    return document.get(name) if isinstance(document, dict) else None
