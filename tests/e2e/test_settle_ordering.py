"""settle applies events by chain position: out-of-order, stale and illegal events, through the
real push subscription into the running settle."""

import json
import time

import sqlalchemy

from shared.stack.chain_driver import wait_for
from tests.support.events import body, chain_event, new_escrow_id


def _escrow(engine, escrow_id: str):
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(
            "SELECT state, sequence, last_block, last_log_index FROM settlement.escrows WHERE escrow_id = :i"),
            {"i": int(escrow_id)}).first()


def _history(engine, escrow_id: str) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(
            "SELECT to_state FROM settlement.transitions WHERE escrow_id = :i ORDER BY sequence"),
            {"i": int(escrow_id)}).scalars().all()


def _settle_log(stack) -> list[dict]:
    return [json.loads(line) for line in (stack.layout.logs / "settle.log").read_text().splitlines()
            if line.startswith("{")]


def test_approved_before_created_waits_and_then_applies(stack, bus, owner_engine):
    escrow_id = new_escrow_id()
    errors_before = sum(1 for entry in _settle_log(stack) if entry["severity"] == "ERROR")
    approved = chain_event("EscrowApproved", escrow_id, block_number=11)
    bus.publish("settlement.events.v1", body(approved))
    time.sleep(3)  # delivered and retried while the escrow is unknown
    assert _escrow(owner_engine, escrow_id) is None
    # Waiting is expected: INFO with the reason, no traceback, no ERROR line.
    waits = [entry for entry in _settle_log(stack) if entry.get("event_id") == approved["event_id"]
             and entry["message"].startswith("event waits")]
    assert waits and all(entry["severity"] == "INFO" and "exception" not in entry for entry in waits)
    assert sum(1 for entry in _settle_log(stack) if entry["severity"] == "ERROR") == errors_before
    bus.publish("settlement.events.v1", body(chain_event("EscrowCreated", escrow_id, block_number=10)))
    row = wait_for(lambda: (r := _escrow(owner_engine, escrow_id)) and r.state == "approved" and r,
                   "approved after created landed")
    assert (row.last_block, row.sequence) == (11, 2)
    assert _history(owner_engine, escrow_id) == ["created", "approved"]


def test_completed_before_approved_waits_for_the_missing_step(stack, bus, owner_engine):
    escrow_id = new_escrow_id()
    bus.publish("settlement.events.v1", body(chain_event("EscrowCreated", escrow_id, block_number=10)))
    wait_for(lambda: _escrow(owner_engine, escrow_id), "created")
    bus.publish("settlement.events.v1", body(chain_event("EscrowCompleted", escrow_id, block_number=12)))
    time.sleep(2)
    assert _escrow(owner_engine, escrow_id).state == "created"
    bus.publish("settlement.events.v1", body(chain_event("EscrowApproved", escrow_id, block_number=11)))
    wait_for(lambda: _escrow(owner_engine, escrow_id).state == "completed", "completed")
    assert _history(owner_engine, escrow_id) == ["created", "approved", "completed"]


def test_older_event_changes_nothing(stack, bus, owner_engine):
    escrow_id = new_escrow_id()
    for event_type, block in (("EscrowCreated", 10), ("EscrowApproved", 11), ("EscrowRefunded", 13)):
        bus.publish("settlement.events.v1", body(chain_event(event_type, escrow_id, block_number=block)))
        wait_for(lambda b=block: (r := _escrow(owner_engine, escrow_id)) and r.last_block == b, f"block {block}")
    # A completion at an earlier position than the refund (another fork's leftover): no effect.
    stale = chain_event("EscrowCompleted", escrow_id, block_number=12)
    bus.publish("settlement.events.v1", body(stale))
    wait_for(lambda: _inbox_outcome(owner_engine, stale["event_id"]) == "applied", "stale event consumed")
    row = _escrow(owner_engine, escrow_id)
    assert (row.state, row.sequence, row.last_block) == ("refunded", 3, 13)


def _inbox_outcome(engine, event_id: str):
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text("SELECT outcome FROM settlement.inbox WHERE event_id = :e"),
                            {"e": event_id}).scalar()


def test_illegal_transition_is_recorded_with_its_reason_and_acknowledged(stack, bus, owner_engine):
    escrow_id = new_escrow_id()
    for event_type, block in (("EscrowCreated", 10), ("EscrowRefunded", 11)):
        bus.publish("settlement.events.v1", body(chain_event(event_type, escrow_id, block_number=block)))
        wait_for(lambda b=block: (r := _escrow(owner_engine, escrow_id)) and r.last_block == b, f"block {block}")
    illegal = chain_event("EscrowApproved", escrow_id, block_number=12)
    message_id = bus.publish("settlement.events.v1", body(illegal))

    def rejection():
        with owner_engine.connect() as conn:
            return conn.execute(sqlalchemy.text(
                "SELECT reason, delivery_count FROM settlement.rejected_messages WHERE message_id = :m"),
                {"m": message_id}).first()

    row = wait_for(rejection, "rejection recorded")
    assert "cannot go from refunded to approved" in row.reason
    assert _inbox_outcome(owner_engine, illegal["event_id"]) == "rejected"
    time.sleep(4)  # several backoff periods: acknowledged, so never redelivered
    assert rejection().delivery_count == 1
    assert _escrow(owner_engine, escrow_id).state == "refunded"


def test_event_for_an_escrow_that_never_appears_is_rejected_after_the_grace_period(stack, bus, owner_engine):
    """A settle instance with a 2 s grace period, fed through its own push subscription."""
    from tests.support.relay import free_port

    topic = f"test-grace-{new_escrow_id()}"
    bus.create_topic(topic)
    bus.create_topic(topic + ".dlq")
    port = free_port()
    settle = stack.start_function(stack.topology.function("settle"), None, stack.layout.read_state()["escrow_address"],
                                  port=port, instance="settle-short-grace",
                                  env_overrides={"PREREQUISITE_GRACE_SECONDS": "2"})
    try:
        bus.push_subscription(topic, f"http://127.0.0.1:{port}/", topic + ".dlq", max_attempts=50)
        orphan = chain_event("EscrowApproved", new_escrow_id(), block_number=11)
        message_id = bus.publish(topic, body(orphan))

        def rejection():
            with owner_engine.connect() as conn:
                return conn.execute(sqlalchemy.text(
                    "SELECT reason FROM settlement.rejected_messages WHERE message_id = :m"),
                    {"m": message_id}).scalar()

        reason = wait_for(rejection, "rejection after the grace period", timeout=30)
        assert "must wait for the transitions before it; gave up after" in reason
        assert _inbox_outcome(owner_engine, orphan["event_id"]) == "rejected"
    finally:
        from shared.stack import services

        services.stop(settle)
