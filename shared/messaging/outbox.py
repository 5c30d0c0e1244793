"""The outbox: events are written in the same transaction as the effect, then published."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shared import pubsub
from shared.db import Connection, Engine, execute_autocommitted, sql, transaction
from shared.envelope import Envelope, canonical_json
from shared.errors import PublishFailed
from shared.pubsub import OutgoingMessage, publish_all

log = logging.getLogger(__name__)

# An outbox row no caller is publishing from memory right now (see enqueue_many).
LEASE_ENDED = "(publishing_until IS NULL OR publishing_until < now())"
# A drain's round sends at most this many rows (one transaction holding their row locks).
PUBLISH_BATCH = 500
# Rows published from memory go in rounds of this many: the Publish requests of a round are in flight
# together, then the round is marked in one statement.
STAGED_ROUND = pubsub.MESSAGES_PER_REQUEST * pubsub.REQUESTS_IN_FLIGHT
# How long a consumer keeps publishing rounds after its handler (`drain`) at least; longer where its
# function's timeout leaves room (shared/messaging/consumer.py). Anything left goes with the next
# delivery, or the reconciler publishes it.
DRAIN_SECONDS = 20.0
# A round's (row key, message id) pairs, as two JSON arrays zipped in SQL: pg8000 writes a text[]
# parameter by escaping every character in Python (40 ms for 4,000 ids), json.dumps takes 1 ms.
SENT_PAIRS = ("ROWS FROM (jsonb_array_elements_text(CAST({keys} AS jsonb)), "
              "jsonb_array_elements_text(CAST({message_ids} AS jsonb))) AS sent(key, message_id)")


def sent_pairs(keys: Sequence[object], message_ids: Sequence[str]) -> tuple[str, str]:
    """The two JSON arrays SENT_PAIRS reads."""
    return json.dumps(list(keys)), json.dumps(list(message_ids))


def enqueue(conn: Connection, schema: str, topic: str, envelope: Envelope,
            extra_attributes: dict[str, str] | None = None) -> bool:
    """Add an event to the outbox; False when its dedupe key is already there (kept as it was)."""
    inserted = conn.execute(sql(
        f"INSERT INTO {schema}.outbox (dedupe_key, event_id, topic, envelope, attributes) "
        "VALUES (:dedupe_key, :event_id, :topic, CAST(:envelope AS jsonb), CAST(:attributes AS jsonb)) "
        "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
    ), {"dedupe_key": envelope.dedupe_key, "event_id": envelope.event_id, "topic": topic,
        "envelope": envelope.canonical_json,
        "attributes": json.dumps({**envelope.attributes(), **(extra_attributes or {})})}).first()
    return inserted is not None


@dataclass(frozen=True)
class Staged:
    """An outbox row this transaction added, held in memory to be published after commit."""

    id: int
    message: OutgoingMessage


def enqueue_many(conn: Connection, schema: str, topic: str,
                 events: list[tuple[Envelope, dict[str, str]]], publish_timeout: float) -> list[Staged]:
    """Add many events (with their extra attributes) in one statement, in order; known dedupe keys are
    kept as they were. Returns the rows added, for the caller to send with `publish_staged` once the
    transaction commits, each round within `publish_timeout`.

    The rows carry a lease (`publishing_until`) for as long as those rounds may take: until then the
    other publishers leave them to the caller, so a row is not sent twice.

    The rows go as one JSON document (`jsonb_to_recordset … WITH ORDINALITY`): the statement's text is
    the same for 1 event or 10,000, and the outbox ids follow the list's order, the order of publishing.
    """
    if not events:
        return []
    rows = staging_rows(events)
    inserted = conn.execute(sql(
        f"INSERT INTO {schema}.outbox (dedupe_key, event_id, topic, envelope, attributes, publishing_until) "
        "SELECT e.dedupe_key, e.event_id, :topic, e.envelope, e.attributes, now() + make_interval(secs => :lease) "
        "FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb)) "
        "AS (dedupe_key text, event_id text, envelope jsonb, attributes jsonb)) "
        "WITH ORDINALITY AS e(dedupe_key, event_id, envelope, attributes, position) "
        "ORDER BY e.position ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key"
    ), {"topic": topic, "rows": rows_with_envelopes(rows, [envelope for envelope, _ in events]),
        "lease": lease_seconds(len(events), publish_timeout)}).all()
    return staged_rows(topic, events, rows, inserted)


def staging_rows(events: list[tuple[Envelope, dict[str, str]]]) -> list[dict[str, Any]]:
    """The outbox columns of each event but its envelope (see rows_with_envelopes), in order."""
    return [{"dedupe_key": envelope.dedupe_key, "event_id": envelope.event_id,
             "attributes": {**envelope.attributes(), **extra}} for envelope, extra in events]


def lease_seconds(count: int, publish_timeout: float) -> float:
    """How long `count` staged rows are left to the caller: its rounds of publishing, and one more."""
    return (-(-count // STAGED_ROUND) + 1) * publish_timeout


def staged_rows(topic: str, events: list[tuple[Envelope, dict[str, str]]], rows: list[dict[str, Any]],
                inserted: Sequence[Any]) -> list[Staged]:
    """The rows an insert of `rows` added (`inserted`: their id and dedupe key), in id order, each with
    the message to send. The first of the events sharing a dedupe key is the one stored."""
    added = {row.dedupe_key: row.id for row in inserted}
    staged = {}
    for row, (envelope, _) in zip(rows, events, strict=True):
        if row["dedupe_key"] in added and row["dedupe_key"] not in staged:
            staged[row["dedupe_key"]] = Staged(added[row["dedupe_key"]], OutgoingMessage(
                topic, envelope.to_bytes(), row["attributes"]))
    return sorted(staged.values(), key=lambda s: s.id)


def rows_with_envelopes(rows: list[dict[str, Any]], envelopes: Sequence[Envelope]) -> str:
    """A JSON array of `rows`, each with an "envelope" member: the envelope's canonical text, spliced in
    as it is (it was serialized once, for the wire) rather than serialized again inside the array."""
    return "[" + ",".join(f'{json.dumps(row)[:-1]},"envelope":{envelope.canonical_json}}}'
                          for row, envelope in zip(rows, envelopes, strict=True)) + "]"


def wire_bytes(envelope: dict) -> bytes:
    """A stored envelope as it goes on the wire (the same bytes on every republish)."""
    return canonical_json(envelope).encode()


def leased_rows_caused_by(conn: Connection, schema: str, cause_event_id: str) -> int:
    """How many events `cause_event_id` caused (their `causation_id`) are unpublished and still leased to
    the delivery that staged them."""
    return conn.execute(sql(
        f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL AND NOT {LEASE_ENDED} "
        "AND envelope->>'causation_id' = :cause"), {"cause": cause_event_id}).scalar_one()


def publish_pending(engine: Engine, schema: str, project_id: str, timeout: float) -> int:
    """Publish the outbox rows not yet published, oldest first; return how many were sent.

    The rows stay locked (SKIP LOCKED) while their publish is in flight, so two instances draining
    at once do not send the same row twice; a failed publish rolls back and leaves them pending.
    Rows whose lease runs (staged, their caller is publishing them) are left to that caller.
    """
    with transaction(engine) as conn:
        rows = conn.execute(sql(
            f"SELECT id, topic, envelope, attributes FROM {schema}.outbox "
            f"WHERE published_at IS NULL AND {LEASE_ENDED} ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED"
        ), {"batch": PUBLISH_BATCH}).all()
        if not rows:
            return 0
        messages = [
            OutgoingMessage(topic=row.topic, data=wire_bytes(row.envelope), attributes=dict(row.attributes))
            for row in rows
        ]
        _mark_published(conn, schema, [row.id for row in rows], publish_all(project_id, messages, timeout))
    log.info("published outbox rows", extra={"schema": schema, "count": len(rows)})
    return len(rows)


def publish_staged(conn: Connection, schema: str, project_id: str, timeout: float, staged: list[Staged]) -> int:
    """Publish committed rows from memory (no read-back of their envelopes), in rounds of STAGED_ROUND,
    each marked published in one autocommitted statement on `conn`, a connection between transactions.

    No row lock is held across the publish: the rows' lease keeps the other publishers off them. A
    failed publish hands the rows not sent back (clears their lease, so `drain` takes them at once) and
    raises; a row another publisher recorded first (its lease had run out) keeps its message id.

    A round is marked while the next one is published (one marking thread, so `conn` serves one
    statement at a time, in order): relay's 10,000 logs went out in three rounds of 0.05-0.13 s of
    publishing and 0.05-0.13 s of marking each. A marking that fails is raised once the round in flight
    has been published; its rows, and that round's, stay leased and go out again when the lease runs out.
    """
    if len(staged) <= STAGED_ROUND:  # one round (a consumer's few events): nothing to overlap
        return _publish_in_one_round(conn, schema, project_id, timeout, staged)
    with ThreadPoolExecutor(1, thread_name_prefix="outbox-marking") as marking:
        marked: Future | None = None
        for start in range(0, len(staged), STAGED_ROUND):
            round_ = staged[start:start + STAGED_ROUND]
            try:
                message_ids = publish_all(project_id, [s.message for s in round_], timeout)
            except PublishFailed:
                if marked is not None:
                    marked.result()
                _hand_back(conn, schema, [s.id for s in staged[start:]])
                raise
            if marked is not None:
                marked.result()
            marked = marking.submit(_mark, conn, schema, round_, message_ids)
        if marked is not None:
            marked.result()
    log.info("published outbox rows", extra={"schema": schema, "count": len(staged)})
    return len(staged)


def _publish_in_one_round(conn: Connection, schema: str, project_id: str, timeout: float,
                          staged: list[Staged]) -> int:
    if not staged:
        return 0
    try:
        message_ids = publish_all(project_id, [s.message for s in staged], timeout)
    except PublishFailed:
        _hand_back(conn, schema, [s.id for s in staged])
        raise
    _mark(conn, schema, staged, message_ids)
    log.info("published outbox rows", extra={"schema": schema, "count": len(staged)})
    return len(staged)


def _mark(conn: Connection, schema: str, round_: list[Staged], message_ids: Sequence[str]) -> None:
    if len(round_) == 1:  # a consumer's one event: its row by its key
        execute_autocommitted(conn, _MARK_ONE_STILL_UNPUBLISHED.format(schema=schema), (message_ids[0], round_[0].id))
    else:
        execute_autocommitted(conn, _MARK_STILL_UNPUBLISHED.format(schema=schema),
                              sent_pairs([s.id for s in round_], message_ids))


def _hand_back(conn: Connection, schema: str, ids: list[int]) -> None:
    """Clear the lease of rows this caller could not publish; best effort (else the lease runs out)."""
    try:
        execute_autocommitted(conn, f"UPDATE {schema}.outbox SET publishing_until = NULL "
                                    "WHERE id = ANY(CAST(%s AS bigint[])) AND published_at IS NULL", (ids,))
    except Exception:
        log.warning("could not hand staged outbox rows back; their lease will run out",
                    extra={"schema": schema, "count": len(ids)}, exc_info=True)


# Records what was sent; a row another publisher recorded first keeps its message id.
# One row by its key: always an index lookup. The plan of the many-row form below, prepared once per
# connection, may be made while the outbox is empty (a new database): a hash join over every unpublished
# row, dead index entries included until a vacuum. settle's one row marked that way took 0.89 ms in a
# fresh stack's first minute (0.25 ms once autovacuum had analyzed the table), and 8 ms with 20,000 rows
# unpublished; this form 0.30 ms in the fresh stack.
_MARK_ONE_STILL_UNPUBLISHED = (
    "UPDATE {schema}.outbox SET published_at = now(), message_id = %s, publishing_until = NULL "
    "WHERE id = %s AND published_at IS NULL"
)
_MARK_STILL_UNPUBLISHED = (
    "UPDATE {schema}.outbox AS o SET published_at = now(), message_id = sent.message_id, publishing_until = NULL "
    f"FROM {SENT_PAIRS.format(keys='%s', message_ids='%s')} "
    "WHERE o.id = CAST(sent.key AS bigint) AND o.published_at IS NULL"
)


def _mark_published(conn: Connection, schema: str, ids: list[int], message_ids: Sequence[str]) -> None:
    # One statement for the whole batch (an executemany would be one round trip per row).
    keys, sent_ids = sent_pairs(ids, message_ids)
    conn.execute(
        sql(
            f"UPDATE {schema}.outbox AS o SET published_at = now(), message_id = sent.message_id "
            f"FROM {SENT_PAIRS.format(keys=':ids', message_ids=':message_ids')} "
            "WHERE o.id = CAST(sent.key AS bigint)"
        ),
        {"ids": keys, "message_ids": sent_ids},
    )


def drain(engine: Engine, schema: str, project_id: str, timeout: float, deadline: float) -> int:
    """Publish rounds until the outbox is empty or the `deadline` (time.monotonic()) has passed; at least
    one round. Returns how many rows were sent."""
    total = 0
    while True:
        sent = publish_pending(engine, schema, project_id, timeout)
        total += sent
        if sent < PUBLISH_BATCH or time.monotonic() >= deadline:
            return total


def count_unpublished(conn: Connection, schema: str) -> int:
    """How many outbox rows of `schema` still wait to be published."""
    return conn.execute(sql(f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL")).scalar_one()
