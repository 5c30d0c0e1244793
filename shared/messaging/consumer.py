"""The consumer wrapper every Pub/Sub-triggered function runs its domain handler in.

1. In one transaction: record `(consumer, dedupe_key)` in the inbox; if it was new, apply the handler's
   effect and write the events it returns to the outbox. A duplicate skips straight to step 2.
   A consumer whose domain offers it (`at_once`) first tries step 1 as one autocommitted statement: the
   effect, the inbox row and the outbox rows written together or not at all, in one round trip instead
   of a transaction's four or more. Whatever that statement does not apply goes the transaction's way.
2. Publish, wait for Pub/Sub to confirm, mark published: after a new event, the rows step 1 wrote, from
   memory on the same connection; after a redelivery, whatever the outbox still holds.
3. Optionally, `after_commit`: work with outside effects that must follow the commit (notify's sending,
   assess-margin's publishing of the margin events its pass recorded), run on the first delivery and
   on every redelivery, so a duplicate still finishes what is pending.

A crash anywhere between the two steps only re-publishes the same event ids on redelivery, and the
downstream inboxes drop them. Permanent errors are recorded with their reason and acknowledged;
everything else propagates, so Pub/Sub retries and eventually dead-letters.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.exceptions import ServiceUnavailable

from shared.db import (
    OUTAGE_WAIT_SECONDS,
    Connection,
    Engine,
    connection,
    execute_autocommitted,
    get_engine,
    server_answered,
    sql,
    sqlstate,
    transaction,
)
from shared.envelope import Envelope
from shared.errors import AwaitingPrerequisite, InvalidEvent, PermanentError
from shared.logs import correlation
from shared.messaging import APPLIED, REJECTED, outbox
from shared.messaging.rejections import record_rejection
from shared.pubsub import OutgoingMessage
from shared.settings import Settings
from shared.text import unstorable_text

log = logging.getLogger(__name__)

# What a handler returns: the events to publish, each with its topic.
Outgoing = Sequence[tuple[str, Envelope]]
Handler = Callable[[Connection, Envelope], Outgoing]
# Given a connection between transactions, an event's effect as one statement (OneStatement), or None to
# apply it in a transaction, the handler's way.
AtOnce = Callable[[Connection, Envelope], "OneStatement | None"]
# Work with outside effects (sending an email, publishing) that must follow the commit, on the first
# delivery and on every redelivery, given the time (time.monotonic()) its drains may run until (`drain_until`);
# it raises a RetryableError to have the message redelivered.
AfterCommit = Callable[[Engine, Envelope, float], None]
# A delivery's drains run until the handler's start plus the function's timeout, less the database outage
# the delivery may have waited out before the handler ran (shared/db.py) and this margin to answer in; and
# for at least outbox.DRAIN_SECONDS after the handler. So a 120 s function's 100k-event backlog goes out in
# the delivery that made it, without the delivery outliving its timeout.
ANSWER_MARGIN_SECONDS = 10.0

# Outcomes of one delivery, as logged and returned.
OUTCOME_APPLIED = "applied"
OUTCOME_DUPLICATE = "duplicate"
OUTCOME_REJECTED = "rejected"
OUTCOME_REPLAYED = "replayed"

# The reconciler republishes a source's events with this attribute when a downstream copy drifted
# although its inbox has them (a row deleted or altered by hand, a restore): a replayable consumer then
# runs its handler again instead of dropping the event as a duplicate. Replayable handlers are
# idempotent by their own state (settle's chain positions, risk's sequences, notify's one delivery
# per event and channel), so a replay restores what is missing and changes nothing else.
REPLAY_ATTRIBUTE = "replay"
REPLAY_BY_RECONCILER = "reconcile"


@dataclass(frozen=True)
class OneStatement:
    """An event's effect as clauses of one statement (see `Consumer.apply_at_once`).

    `clauses` are WITH clauses, the last one named `effect`: it returns one row when the effect applied,
    none when the data was not as the domain expected (it read it just before, or expects it absent),
    and then nothing else may have been written either. `params` are their values, in order, for the
    driver's `%s`. `outgoing` are the events to publish once it applied."""

    clauses: str
    params: tuple
    outgoing: Outgoing


# Step 1 around a OneStatement's clauses: the inbox row only when the effect applied, the outbox rows only
# with the inbox row. The claim has no ON CONFLICT: an event the inbox already holds fails the whole
# statement, effect included (unique violation), and goes the transaction's way as a duplicate. One row
# when it applied: each outbox row added, or one row of nulls when none was.
_CLAIM_AND_STAGE = (
    "WITH {clauses}, "
    "claim AS (INSERT INTO {schema}.inbox (consumer, dedupe_key, event_id, event_type, outcome) "
    "SELECT %s, %s, %s, %s, %s FROM effect RETURNING 1), "
    "staged AS (INSERT INTO {schema}.outbox (dedupe_key, event_id, topic, envelope, attributes, publishing_until) "
    "SELECT e.dedupe_key, e.event_id, e.topic, e.envelope, e.attributes, now() + make_interval(secs => %s) "
    "FROM claim, ROWS FROM (jsonb_to_recordset(CAST(%s AS jsonb)) "
    "AS (dedupe_key text, event_id text, topic text, envelope jsonb, attributes jsonb)) "
    "WITH ORDINALITY AS e(dedupe_key, event_id, topic, envelope, attributes, position) "
    "ORDER BY e.position ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key) "
    "SELECT staged.id, staged.dedupe_key FROM claim LEFT JOIN staged ON true"
)


@dataclass(frozen=True)
class PushedMessage:
    """A Pub/Sub message as delivered by a push subscription through functions-framework."""

    message_id: str
    data: bytes
    attributes: dict[str, str]
    # When Pub/Sub accepted the message; out-of-order waits are measured from it.
    published_at: datetime

    @classmethod
    def from_cloud_event(cls, cloud_event: Any) -> PushedMessage:
        """Unwrap the `messagePublished` CloudEvent; raise InvalidEvent if it is not one."""
        data = cloud_event.data if hasattr(cloud_event, "data") else None
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, dict):
            raise InvalidEvent("CloudEvent carries no Pub/Sub message")
        message_id = str(message.get("messageId") or message.get("message_id") or cloud_event["id"])
        attributes = message.get("attributes") or {}
        if not isinstance(attributes, dict) or unstorable_text(attributes):
            # Kept with a rejection as JSONB, which cannot hold them; the body is what matters.
            attributes = {"unstorable_attributes": "true"}
        try:
            body = base64.b64decode(message.get("data") or "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidEvent(f"message data is not base64: {exc}") from exc
        return cls(message_id=message_id, data=body, attributes=dict(attributes),
                   published_at=_parse_time(message.get("publishTime")))


class Consumer:
    """Runs one domain handler under the inbox/outbox discipline."""

    def __init__(self, name: str, schema: str, settings: Settings, handler: Handler,
                 after_commit: AfterCommit | None = None, *, replayable: bool = False,
                 at_once: AtOnce | None = None) -> None:
        self.name = name
        self.schema = schema
        self.settings = settings
        self.handler = handler
        self.after_commit = after_commit
        self.replayable = replayable
        self.at_once = at_once
        self.work_seconds = work_seconds(settings.function_timeout_seconds)
        self._claim_statement = sql(
            f"INSERT INTO {schema}.inbox (consumer, dedupe_key, event_id, event_type, outcome, reason) "
            "VALUES (:consumer, :dedupe_key, :event_id, :event_type, :outcome, :reason) "
            "ON CONFLICT (consumer, dedupe_key) DO NOTHING RETURNING event_id")

    def handle(self, cloud_event: Any) -> str:
        """Process one push delivery; return its outcome or raise to have it redelivered.

        An event that waits for an earlier one is answered 503 without a traceback: waiting is expected
        (out-of-order delivery) and already logged at INFO with its reason.
        """
        try:
            return self._handle(cloud_event)
        except AwaitingPrerequisite as exc:
            raise ServiceUnavailable(f"waiting for an earlier event: {exc.reason}") from None

    def _handle(self, cloud_event: Any) -> str:
        work_until = time.monotonic() + self.work_seconds
        try:
            message = PushedMessage.from_cloud_event(cloud_event)
        except InvalidEvent as exc:
            raw = PushedMessage(message_id=str(cloud_event["id"]), data=b"", attributes={},
                                published_at=datetime.now(UTC))
            return self._reject_poison(raw, exc)
        log.info("message received", extra={"consumer": self.name, "message_id": message.message_id})
        try:
            envelope = Envelope.from_bytes(message.data)
        except InvalidEvent as exc:
            return self._reject_poison(message, exc)
        with correlation(envelope.correlation_id):
            with connection(self._engine()) as conn:
                at_once = self.apply_at_once(conn, message, envelope)
                if at_once is not None:
                    outcome, staged = OUTCOME_APPLIED, at_once
                else:
                    outcome, staged = self._apply_once(conn, message, envelope)
                outbox.publish_staged(conn, self.schema, self.settings.project_id,
                                      self.settings.publish_timeout_seconds, staged)
            # A redelivery may find rows an earlier attempt committed but failed to publish.
            if outcome == OUTCOME_DUPLICATE:
                self._wait_for_earlier_delivery(envelope)
            until = drain_until(work_until)
            if outcome in (OUTCOME_DUPLICATE, OUTCOME_REPLAYED):
                self.publish_outbox(until)
            if self.after_commit is not None and outcome != OUTCOME_REJECTED:
                self.after_commit(self._engine(), envelope, until)
            return outcome

    def publish_outbox(self, until: float) -> int:
        """Step 2: publish what the outbox holds, in rounds, until `until` (time.monotonic())."""
        return outbox.drain(self._engine(), self.schema, self.settings.project_id,
                            self.settings.publish_timeout_seconds, until)

    def _wait_for_earlier_delivery(self, envelope: Envelope) -> None:
        """Answer 503 to a copy of an event whose earlier delivery still holds the lease on the events it
        staged. That delivery is publishing them (two copies at once), or it stopped between its commit and
        its publish (Pub/Sub sent the message again). Either way the copy comes back later: by then they are
        published, or their lease has ended and its drain sends them. Acknowledged now, it would leave them
        to the reconciler; published now, they might go out twice."""
        with transaction(self._engine()) as conn:
            leased = outbox.leased_rows_caused_by(conn, self.schema, envelope.event_id)
        if leased:
            log.info("events an earlier delivery staged are still leased to it; Pub/Sub will redeliver",
                     extra={"consumer": self.name, "event_id": envelope.event_id, "rows": leased})
            raise ServiceUnavailable("an earlier delivery of this event is still publishing what it staged")

    def _engine(self):
        return get_engine(self.settings.database)

    def apply_at_once(self, conn: Connection, message: PushedMessage, envelope: Envelope) -> list[outbox.Staged] | None:
        """Step 1 as one autocommitted statement on `conn` (between transactions), when the domain offers
        one for this event: returns the outbox rows it added (committed), or None when there was no
        such statement or it applied nothing. The transaction path then decides, as it would have
        without this one: a duplicate, an event waiting for another, a rejection, data that changed since
        the domain read it, a statement the server refused (its reason logged)."""
        if self.at_once is None or REPLAY_ATTRIBUTE in message.attributes:
            return None
        try:
            plan = self.at_once(conn, envelope)
            if plan is None:
                return None
            events: list[tuple[Envelope, dict[str, str]]] = [(event, {}) for _, event in plan.outgoing]
            rows = [{**row, "topic": topic}
                    for row, (topic, _) in zip(outbox.staging_rows(events), plan.outgoing, strict=True)]
            written = execute_autocommitted(conn, _CLAIM_AND_STAGE.format(clauses=plan.clauses, schema=self.schema), (
                *plan.params, self.name, envelope.dedupe_key, envelope.event_id, envelope.event_type, APPLIED,
                outbox.lease_seconds(len(rows), self.settings.publish_timeout_seconds),
                outbox.rows_with_envelopes(rows, [event for event, _ in events])))
        except PermanentError:  # the transaction path records the rejection
            return None
        except Exception as exc:
            if not server_answered(exc):
                raise
            log.info("one-statement apply refused by the database; applying in a transaction",
                     extra={"consumer": self.name, "event_id": envelope.event_id, "sqlstate": sqlstate(exc)})
            return None
        if not written:
            return None
        log.info(
            "event applied",
            extra={"consumer": self.name, "event_id": envelope.event_id, "event_type": envelope.event_type,
                   "applied_by": "one statement"},
        )
        added = {row["dedupe_key"]: row["id"] for row in written if row["id"] is not None}
        return sorted((outbox.Staged(added[row["dedupe_key"]], OutgoingMessage(row["topic"], event.to_bytes(),
                                                                                 row["attributes"]))
                       for row, (event, _) in zip(rows, events, strict=True) if row["dedupe_key"] in added),
                      key=lambda staged: staged.id)

    def _apply_once(self, conn: Connection, message: PushedMessage,
                    envelope: Envelope) -> tuple[str, list[outbox.Staged]]:
        """Step 1 on `conn`; returns the outcome and the outbox rows it added (committed)."""
        try:
            with conn.begin():
                if not self._claim(conn, envelope, APPLIED, None):
                    if self.replayable and message.attributes.get(REPLAY_ATTRIBUTE) == REPLAY_BY_RECONCILER:
                        # Events the outbox no longer holds (pruned) are staged again and go out from memory.
                        staged = self._enqueue(conn, self.handler(conn, envelope))
                        log.info("event replayed for the reconciler",
                                 extra={"consumer": self.name, "event_id": envelope.event_id})
                        return OUTCOME_REPLAYED, staged
                    log.info(
                        "duplicate delivery skipped",
                        extra={"consumer": self.name, "event_id": envelope.event_id},
                    )
                    return OUTCOME_DUPLICATE, []
                staged = self._enqueue(conn, self.handler(conn, envelope))
        except PermanentError as exc:
            return self._reject(conn, message, envelope, exc.reason), []
        except AwaitingPrerequisite as exc:
            waited = (datetime.now(UTC) - message.published_at).total_seconds()
            if waited > self.settings.prerequisite_grace_seconds:
                return self._reject(conn, message, envelope, f"{exc.reason}; gave up after {waited:.0f}s"), []
            log.info(
                "event waits for an earlier one; Pub/Sub will redeliver",
                extra={"consumer": self.name, "event_id": envelope.event_id, "reason": exc.reason,
                       "waited_seconds": round(waited, 1)},
            )
            raise
        log.info(
            "event applied",
            extra={"consumer": self.name, "event_id": envelope.event_id, "event_type": envelope.event_type,
                   "applied_by": "transaction"},
        )
        return OUTCOME_APPLIED, staged

    def _enqueue(self, conn: Connection, outgoing: Outgoing) -> list[outbox.Staged]:
        """The handler's events into the outbox: one statement per topic."""
        by_topic: dict[str, list[tuple[Envelope, dict[str, str]]]] = {}
        for topic, event in outgoing:
            by_topic.setdefault(topic, []).append((event, {}))
        return [row for topic, events in by_topic.items()
                for row in outbox.enqueue_many(conn, self.schema, topic, events,
                                               self.settings.publish_timeout_seconds)]

    def _reject(self, conn: Connection, message: PushedMessage, envelope: Envelope, reason: str) -> str:
        # The effect rolled back with the inbox row; record the refusal so it is never retried.
        with conn.begin():
            self._claim(conn, envelope, REJECTED, reason)
            self._record_rejection(conn, message, reason, envelope.event_id)
        log.warning("event rejected", extra={"consumer": self.name, "event_id": envelope.event_id, "reason": reason})
        return OUTCOME_REJECTED

    def _claim(self, conn: Connection, envelope: Envelope, outcome: str, reason: str | None) -> bool:
        """Insert the inbox row; False when this consumer has already seen the event."""
        inserted = conn.execute(self._claim_statement, {
            "consumer": self.name, "dedupe_key": envelope.dedupe_key, "event_id": envelope.event_id,
            "event_type": envelope.event_type, "outcome": outcome, "reason": reason}).first()
        return inserted is not None

    def _reject_poison(self, message: PushedMessage, exc: InvalidEvent) -> str:
        with transaction(self._engine()) as conn:
            self._record_rejection(conn, message, exc.reason, exc.event_id)
        log.warning(
            "poison message acknowledged",
            extra={"consumer": self.name, "message_id": message.message_id, "reason": exc.reason},
        )
        return OUTCOME_REJECTED

    def _record_rejection(
        self, conn: Connection, message: PushedMessage, reason: str, event_id: str | None
    ) -> None:
        record_rejection(conn, self.schema, self.name, message.message_id, event_id, reason, message.data,
                         message.attributes)


def work_seconds(function_timeout_seconds: int | None) -> float:
    """What a delivery's work may take from its handler's start (see ANSWER_MARGIN_SECONDS); 0 outside a
    function, whose drains then run for outbox.DRAIN_SECONDS."""
    if function_timeout_seconds is None:
        return 0.0
    return function_timeout_seconds - OUTAGE_WAIT_SECONDS - ANSWER_MARGIN_SECONDS


def drain_until(work_until: float) -> float:
    """When a delivery's drains end (time.monotonic()): at its work's end, or DRAIN_SECONDS from now if later."""
    return max(work_until, time.monotonic() + outbox.DRAIN_SECONDS)


def tick_data(cloud_event: Any) -> bytes:
    """The body of a tick (a Scheduler or reconciler message); empty when it carries none or is unreadable."""
    try:
        return PushedMessage.from_cloud_event(cloud_event).data
    except InvalidEvent:
        return b""


def _parse_time(text: Any) -> datetime:
    """Pub/Sub's RFC 3339 publishTime; now when absent or unreadable (the wait then starts now)."""
    if isinstance(text, str):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.now(UTC)
