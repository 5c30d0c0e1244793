"""settle under at-least-once delivery: duplicates, poison, publish failure, an instance killed mid-publish, a
database restart."""

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy

from shared.stack import services
from shared.stack.chain_driver import wait_for
from tests.support.events import body, state_change_id, unique_escrow_created
from tests.support.pubsub import envelopes


def _count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(sql), params).scalar()


def _escrows_with_ids(engine, ids: list[str]) -> int:
    return _count(engine, "SELECT count(*) FROM settlement.escrows WHERE escrow_id = ANY(CAST(:ids AS numeric[]))",
                  ids=ids)


def test_duplicate_delivery_creates_one_escrow_and_one_downstream_event(stack, bus, owner_engine):
    document = unique_escrow_created()
    changes_sub = bus.pull_subscription("settlement.escrows.v1")
    bus.publish("settlement.events.v1", body(document))
    bus.publish("settlement.events.v1", body(document))

    change_id = state_change_id(document)
    received = bus.pull(changes_sub, until=lambda m: any(json.loads(x.data)["event_id"] == change_id for x in m),
                        settle=3.0)
    assert [e["event_id"] for e in envelopes(received)].count(change_id) == 1
    assert _escrows_with_ids(owner_engine, [document["payload"]["escrow_id"]]) == 1
    wait_for(lambda: _count(owner_engine, "SELECT count(*) FROM settlement.inbox WHERE event_id = :e",
                            e=document["event_id"]) == 1, "inbox row")


def test_poison_messages_are_recorded_and_acknowledged(stack, bus, owner_engine):
    not_json = bus.publish("settlement.events.v1", b"\x00\xffnot json at all")
    wrong_schema = unique_escrow_created()
    wrong_schema["payload"]["amount"] = -5
    bad_schema = bus.publish("settlement.events.v1", body(wrong_schema))

    def rejected():
        with owner_engine.connect() as conn:
            return conn.execute(sqlalchemy.text(
                "SELECT message_id, reason, delivery_count, event_id FROM settlement.rejected_messages "
                "WHERE message_id IN (:a, :b) ORDER BY message_id"), {"a": not_json, "b": bad_schema}).all()

    rows = wait_for(lambda: (r := rejected()) and len(r) == 2 and r, "both rejections recorded")
    reasons = {row.message_id: row for row in rows}
    assert "not JSON" in reasons[not_json].reason
    assert "payload.amount" in reasons[bad_schema].reason
    assert reasons[bad_schema].event_id == wrong_schema["event_id"]
    # Acknowledged, not retried: after several backoff periods each was still delivered once.
    time.sleep(5)
    assert [row.delivery_count for row in rejected()] == [1, 1]
    assert _escrows_with_ids(owner_engine, [wrong_schema["payload"]["escrow_id"]]) == 0


_UNPUBLISHED_CHANGES = ("SELECT count(*) FROM settlement.outbox WHERE envelope->>'causation_id' = :e "
                        "AND published_at IS NULL")


def _state_change_published_once(bus, subscription: str, engine, document: dict, timeout: float) -> None:
    """The escrow's state change arrived exactly once, and the outbox holds nothing unpublished for it."""
    change_id = state_change_id(document)
    received = bus.pull(subscription, until=lambda m: any(json.loads(x.data)["event_id"] == change_id for x in m),
                        timeout=timeout, settle=3.0)
    assert [e["event_id"] for e in envelopes(received)].count(change_id) == 1
    assert _count(engine, _UNPUBLISHED_CHANGES, e=document["event_id"]) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_publish_failure_after_commit_is_republished_once_on_redelivery(stack, bus, owner_engine):
    """Step 1 commits, step 2 cannot reach Pub/Sub; the redelivery publishes the outbox, same ids."""
    settle = stack.topology.function("settle")
    address = stack.layout.read_state()["escrow_address"]
    port = stack.layout.base_port + 50
    topic = bus.own_topic()
    changes_sub = bus.pull_subscription("settlement.escrows.v1")
    # An instance whose publisher points at a closed port: every publish fails, after the commit.
    broken = stack.start_function(settle, None, address, port=port, instance="settle-broken-publisher",
                                  env_overrides={"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{_free_port()}",
                                                 "PUBLISH_TIMEOUT_SECONDS": "2"})
    bus.push_subscription(topic, f"http://127.0.0.1:{port}/", topic + ".dlq", max_attempts=20)
    document = unique_escrow_created()
    bus.publish(topic, body(document))
    wait_for(lambda: _count(owner_engine, _UNPUBLISHED_CHANGES, e=document["event_id"]) == 1,
             "the effect committed with its event still in the outbox")
    assert _escrows_with_ids(owner_engine, [document["payload"]["escrow_id"]]) == 1

    # The instance is replaced (as after a crash); the next delivery reaches a healthy one.
    services.stop(broken)
    healthy = stack.start_function(settle, None, address, port=port, instance="settle-healthy-publisher")
    try:
        _state_change_published_once(bus, changes_sub, owner_engine, document, timeout=30)
        assert _escrows_with_ids(owner_engine, [document["payload"]["escrow_id"]]) == 1
    finally:
        services.stop(healthy)


def test_database_restart_with_messages_in_flight_loses_nothing(stack, bus, owner_engine):
    documents = [unique_escrow_created() for _ in range(8)]
    ids = [d["payload"]["escrow_id"] for d in documents]
    services.stop_postgres(stack.layout)
    try:
        for document in documents:
            bus.publish("settlement.events.v1", body(document))
        time.sleep(3)  # deliveries fail against the stopped database and are retried
    finally:
        services.restart_postgres(stack.layout)
    wait_for(lambda: _escrows_with_ids(owner_engine, ids) == len(ids), "every escrow persisted", timeout=60)
    assert _count(owner_engine, "SELECT count(*) FROM settlement.inbox WHERE event_id = ANY(:e)",
                  e=[d["event_id"] for d in documents]) == len(documents)


@contextmanager
def _silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a Publish sent there waits for its timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        held: list[socket.socket] = []
        stop = threading.Event()

        def hold() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except TimeoutError:
                    continue

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            holder.join()
            for connection in held:
                connection.close()


def test_an_instance_killed_between_commit_and_publish_leaves_nothing_to_the_reconciler(stack, bus, owner_engine):
    """The instance dies inside its publish, after its commit. Pub/Sub pushes the event again: the copy is
    answered 503 while the dead delivery's lease holds, then publishes the state change, once."""
    settle = stack.topology.function("settle")
    address = stack.layout.read_state()["escrow_address"]
    port = stack.layout.base_port + 51
    topic = bus.own_topic()
    changes_sub = bus.pull_subscription("settlement.escrows.v1")
    document = unique_escrow_created()
    leased = _UNPUBLISHED_CHANGES + " AND publishing_until > now()"
    with _silent_server() as silent_port:
        # Its publisher's Pub/Sub never answers: the delivery commits, then hangs in its publish (5 s at most,
        # so its rows are leased for 2 x 5 s).
        doomed = stack.start_function(settle, None, address, port=port, instance="settle-killed-mid-publish",
                                      env_overrides={"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{silent_port}",
                                                     "PUBLISH_TIMEOUT_SECONDS": "5"})
        bus.push_subscription(topic, f"http://127.0.0.1:{port}/", topic + ".dlq", max_attempts=100)
        bus.publish(topic, body(document))
        wait_for(lambda: _count(owner_engine, leased, e=document["event_id"]) == 1,
                 "the state change committed and leased to the delivery publishing it", interval=0.05)
        os.killpg(doomed, signal.SIGKILL)
    healthy = stack.start_function(settle, None, address, port=port, instance="settle-after-the-kill")
    try:
        _state_change_published_once(bus, changes_sub, owner_engine, document, timeout=60)
        log = (stack.layout.logs / "settle-after-the-kill.log").read_text()
        assert "still leased to it; Pub/Sub will redeliver" in log  # the copy waited out the lease
    finally:
        services.stop(healthy)
