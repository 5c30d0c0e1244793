"""Publishing staged outbox rows from memory (`outbox.publish_staged`: relay's path after each range, and
every consumer's after a new event): each row goes out with the bytes a republish would send and is marked
once, with one round trip to the database per round; a row another publisher recorded first keeps its
message id; on the real emulator and PostgreSQL."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy

from shared import pubsub
from shared.db import connection, get_engine, transaction
from shared.envelope import Envelope
from shared.errors import PublishFailed
from shared.messaging import outbox
from shared.pubsub import OutgoingMessage
from shared.settings import DatabaseSettings
from shared.stack.layout import PROJECT_ID
from tests.support.round_trips import counting_round_trips

SCHEMA = "notify"


def _envelope(n: int) -> Envelope:
    event_id = f"OutboxProbe:{uuid.uuid4().hex}:{n}"
    return Envelope(event_id=event_id, event_type="OutboxProbe", schema_version=1,
                    occurred_at="2026-12-02T00:00:00+00:00", correlation_id=event_id, causation_id=None,
                    payload={"n": n, "text": "ünïcode"})


@pytest.fixture
def engine(stack):
    settings = DatabaseSettings(name="escrow", user="postgres", host="127.0.0.1", port=stack.layout.postgres_port,
                                instance_connection_name=None)
    return get_engine(settings)


def test_staged_rows_go_out_and_are_marked_once(engine, bus, owner_engine):
    topic = f"outbox-probe-{uuid.uuid4().hex[:8]}"
    bus.create_topic(topic)
    subscription = bus.pull_subscription(topic)
    envelopes = [_envelope(n) for n in range(3)]
    with transaction(engine) as conn:
        staged = outbox.enqueue_many(conn, SCHEMA, topic, [(e, {"probe": "yes"}) for e in envelopes], 30)
    assert [s.message.data for s in staged] == [outbox.wire_bytes(e.to_json()) for e in envelopes]
    try:
        with owner_engine.begin() as other:  # another publisher (a drain) sent the third row a moment ago
            other.execute(sqlalchemy.text(f"UPDATE {SCHEMA}.outbox SET published_at = now(), message_id = 'first' "
                                          "WHERE id = :id"), {"id": staged[2].id})
        with connection(engine) as conn:
            assert outbox.publish_staged(conn, SCHEMA, PROJECT_ID, 30, staged) == 3
            # The same events staged again add nothing (dedupe keys), so there is nothing to publish; one
            # event twice in a batch is stored, and staged, once.
            with conn.begin():
                assert outbox.enqueue_many(conn, SCHEMA, topic, [(e, {}) for e in envelopes], 30) == []
                twice, alone = _envelope(3), _envelope(4)
                [once] = outbox.enqueue_many(conn, SCHEMA, topic, [(twice, {}), (twice, {})], 30)
                [single] = outbox.enqueue_many(conn, SCHEMA, topic, [(alone, {})], 30)
            assert outbox.publish_staged(conn, SCHEMA, PROJECT_ID, 30, [once]) == 1
            with counting_round_trips() as trips:
                assert outbox.publish_staged(conn, SCHEMA, PROJECT_ID, 30, [single]) == 1
                assert outbox.publish_staged(conn, SCHEMA, PROJECT_ID, 30, []) == 0
            # One row is marked by its key, in one autocommitted statement (prepared by the one before).
            assert trips.count == 1
        with owner_engine.connect() as conn:
            assert conn.execute(sqlalchemy.text(f"SELECT message_id FROM {SCHEMA}.outbox WHERE id = :id"),
                                {"id": staged[2].id}).scalar() == "first"
        envelopes += [twice, alone]
        received = bus.pull(subscription, until=lambda messages: len(messages) >= 5, settle=1.0)
        assert sorted(json.loads(m.data)["event_id"] for m in received) == sorted(e.event_id for e in envelopes)
        assert sorted(m.attributes.get("probe", "") for m in received) == ["", "", "yes", "yes", "yes"]
        with owner_engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text(
                f"SELECT envelope, message_id, published_at FROM {SCHEMA}.outbox "
                "WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id"),
                {"ids": [s.id for s in [*staged, once, single]]}).all()
        assert all(row.published_at is not None for row in rows)
        # What went out is what a republish of the stored row would send, and each row knows its message
        # (the one recorded first, for the row sent twice).
        assert sorted(m.data for m in received) == sorted(outbox.wire_bytes(row.envelope) for row in rows)
        assert {row.message_id for row in rows} == {m.message_id for m in received} - {
            m.message_id for m in received if json.loads(m.data)["event_id"] == envelopes[2].event_id} | {"first"}
    finally:
        with owner_engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"DELETE FROM {SCHEMA}.outbox WHERE topic = :t"), {"t": topic})


def test_a_drain_leaves_staged_rows_to_their_publisher_until_handed_back(engine, bus, owner_engine):
    topic = f"outbox-probe-{uuid.uuid4().hex[:8]}"
    later = f"{topic}-later"  # created only after a publish to it was refused (NOT_FOUND from the emulator)
    bus.create_topic(topic)
    subscription = bus.pull_subscription(topic)
    envelopes = [_envelope(n) for n in range(3)]

    def unpublished() -> set[str]:
        with owner_engine.connect() as conn:
            return set(conn.execute(sqlalchemy.text(
                f"SELECT event_id FROM {SCHEMA}.outbox WHERE topic IN (:t, :l) AND published_at IS NULL"),
                {"t": topic, "l": later}).scalars())

    try:
        with transaction(engine) as conn:
            staged = outbox.enqueue_many(conn, SCHEMA, later, [(e, {}) for e in envelopes[:2]], 30)
            outbox.enqueue(conn, SCHEMA, topic, envelopes[2])  # no lease: any drain takes it
        outbox.drain(engine, SCHEMA, PROJECT_ID, 30, 0)  # another delivery's drain, while staged rows are in flight
        assert unpublished() == {envelopes[0].event_id, envelopes[1].event_id}

        with connection(engine) as conn, pytest.raises(PublishFailed, match="NOT_FOUND"):
            outbox.publish_staged(conn, SCHEMA, PROJECT_ID, 30, staged)
        # Handed back: once the topic exists, the next drain sends them, and each event went out once.
        bus.create_topic(later)
        later_subscription = bus.pull_subscription(later)
        outbox.drain(engine, SCHEMA, PROJECT_ID, 30, 0)
        assert unpublished() == set()
        received = bus.pull(subscription, until=bool, settle=1.0) + bus.pull(
            later_subscription, until=lambda messages: len(messages) >= 2, settle=1.0)
        assert sorted(json.loads(m.data)["event_id"] for m in received) == sorted(e.event_id for e in envelopes)

        # A publisher that died leaves its lease to run out; then a drain takes the row.
        late = _envelope(4)
        with transaction(engine) as conn:
            outbox.enqueue_many(conn, SCHEMA, topic, [(late, {})], 30)
        outbox.drain(engine, SCHEMA, PROJECT_ID, 30, 0)
        assert unpublished() == {late.event_id}
        with owner_engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"UPDATE {SCHEMA}.outbox SET publishing_until = now() - interval '1 second' "
                                         "WHERE event_id = :e"), {"e": late.event_id})
        outbox.drain(engine, SCHEMA, PROJECT_ID, 30, 0)
        assert unpublished() == set()
    finally:
        with owner_engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"DELETE FROM {SCHEMA}.outbox WHERE topic IN (:t, :l)"),
                         {"t": topic, "l": later})


def test_rounds_are_marked_while_the_next_is_published_and_a_failed_round_is_handed_back(
        engine, bus, owner_engine, monkeypatch):
    # Rounds of two (production's rounds are STAGED_ROUND rows): the first two rounds go to a topic that
    # exists, the third to one that does not yet, so its publish fails while the second is being marked.
    monkeypatch.setattr(outbox, "STAGED_ROUND", 2)
    topic, missing = f"outbox-probe-{uuid.uuid4().hex[:8]}", f"outbox-probe-{uuid.uuid4().hex[:8]}"
    bus.create_topic(topic)
    subscription = bus.pull_subscription(topic)
    envelopes = [_envelope(n) for n in range(6)]

    def rows() -> dict[str, tuple]:
        with owner_engine.connect() as conn:
            return {row.event_id: (row.message_id, row.publishing_until) for row in conn.execute(sqlalchemy.text(
                f"SELECT event_id, message_id, publishing_until FROM {SCHEMA}.outbox WHERE topic IN (:t, :m)"),
                {"t": topic, "m": missing})}

    try:
        with transaction(engine) as conn:
            staged = outbox.enqueue_many(conn, SCHEMA, topic, [(e, {}) for e in envelopes[:4]], 30)
            staged += outbox.enqueue_many(conn, SCHEMA, missing, [(e, {}) for e in envelopes[4:]], 30)
        with connection(engine) as conn, pytest.raises(PublishFailed, match="NOT_FOUND"):
            outbox.publish_staged(conn, SCHEMA, PROJECT_ID, 30, staged)
        received = bus.pull(subscription, until=lambda messages: len(messages) >= 4, settle=1.0)
        stored = rows()
        # The two rounds sent are marked, each row with the id its message got; the failed one is handed back.
        assert {e.event_id: stored[e.event_id][0] for e in envelopes[:4]} == {
            json.loads(m.data)["event_id"]: m.message_id for m in received}
        assert [stored[e.event_id] for e in envelopes[4:]] == [(None, None), (None, None)]
        # A connection that served the marking thread serves its next statement in step.
        with connection(engine) as conn:
            assert outbox.publish_staged(conn, SCHEMA, PROJECT_ID, 30, staged[:4]) == 4
    finally:
        with owner_engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"DELETE FROM {SCHEMA}.outbox WHERE topic IN (:t, :m)"),
                         {"t": topic, "m": missing})


def test_publish_all_returns_each_message_id_in_order_across_concurrent_requests(bus):
    # Two topics and more messages than two requests hold: several Publish requests in flight at once.
    first, second = (f"publish-probe-{uuid.uuid4().hex[:8]}-{n}" for n in range(2))
    subscriptions = {}
    for topic in (first, second):
        bus.create_topic(topic)
        subscriptions[topic] = bus.pull_subscription(topic)
    count = 2 * pubsub.MESSAGES_PER_REQUEST + 1
    messages = [OutgoingMessage(first if n % 3 else second, str(n).encode(), {"n": str(n)}) for n in range(count)]
    message_ids = pubsub.publish_all(PROJECT_ID, messages, 30)
    received = [m for topic in (first, second) for m in bus.pull(
        subscriptions[topic], until=lambda ms, t=topic: len(ms) >= sum(m.topic == t for m in messages), settle=1.0)]
    assert len(received) == count
    # Each returned id is the id Pub/Sub gave that very message.
    assert {m.message_id: m.data for m in received} == {i: m.data for i, m in zip(message_ids, messages, strict=True)}

    # One refused request (a topic that does not exist) fails the whole publish.
    with pytest.raises(PublishFailed, match="NOT_FOUND"):
        pubsub.publish_all(PROJECT_ID, [OutgoingMessage(first, b"x", {}),
                                        OutgoingMessage(f"{first}-missing", b"y", {})], 30)
