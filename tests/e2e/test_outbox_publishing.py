"""Publishing staged outbox rows from memory (`outbox.publish_staged`, relay's path after each range):
each row goes out once, with the bytes a republish would send, and a row another instance holds is left
to it; on the real emulator and PostgreSQL."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy

from shared.db import get_engine, transaction
from shared.envelope import Envelope
from shared.messaging import outbox
from shared.settings import DatabaseSettings
from shared.stack.layout import PROJECT_ID

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


def test_staged_rows_go_out_once_and_a_row_held_elsewhere_is_left_alone(engine, bus, owner_engine):
    topic = f"outbox-probe-{uuid.uuid4().hex[:8]}"
    bus.create_topic(topic)
    subscription = bus.pull_subscription(topic)
    envelopes = [_envelope(n) for n in range(3)]
    with transaction(engine) as conn:
        staged = outbox.enqueue_many(conn, SCHEMA, topic, [(e, {"probe": "yes"}) for e in envelopes])
    assert [s.message.data for s in staged] == [outbox.wire_bytes(e.to_json()) for e in envelopes]
    try:
        with owner_engine.connect() as other:  # another instance is sending the third row right now
            held = other.begin()
            other.execute(sqlalchemy.text(f"SELECT id FROM {SCHEMA}.outbox WHERE id = :id FOR UPDATE"),
                          {"id": staged[2].id})
            assert outbox.publish_staged(engine, SCHEMA, PROJECT_ID, 30, staged) == 2
            held.rollback()
        assert outbox.publish_staged(engine, SCHEMA, PROJECT_ID, 30, staged) == 1  # only the one left
        assert outbox.publish_staged(engine, SCHEMA, PROJECT_ID, 30, staged) == 0
        # The same events staged again add nothing (dedupe keys), so there is nothing to publish; one event
        # twice in a batch is stored, and staged, once.
        with transaction(engine) as conn:
            assert outbox.enqueue_many(conn, SCHEMA, topic, [(e, {}) for e in envelopes]) == []
            twice = _envelope(3)
            [once] = outbox.enqueue_many(conn, SCHEMA, topic, [(twice, {}), (twice, {})])
        assert outbox.publish_staged(engine, SCHEMA, PROJECT_ID, 30, [once]) == 1
        envelopes.append(twice)
        received = bus.pull(subscription, until=lambda messages: len(messages) >= 4, settle=1.0)
        assert sorted(json.loads(m.data)["event_id"] for m in received) == sorted(e.event_id for e in envelopes)
        assert sorted(m.attributes.get("probe", "") for m in received) == ["", "yes", "yes", "yes"]
        with owner_engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text(
                f"SELECT envelope, message_id FROM {SCHEMA}.outbox WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id"),
                {"ids": [s.id for s in [*staged, once]]}).all()
        # What went out is what a republish of the stored row would send, and each row knows its message.
        assert sorted(m.data for m in received) == sorted(outbox.wire_bytes(row.envelope) for row in rows)
        assert {row.message_id for row in rows} == {m.message_id for m in received}
    finally:
        with owner_engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"DELETE FROM {SCHEMA}.outbox WHERE topic = :t"), {"t": topic})
