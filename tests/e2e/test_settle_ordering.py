"""settle applies events by chain position: out-of-order, stale and illegal events, through the
real push subscription into the running settle."""

import json
import time

import requests
import sqlalchemy

from shared.chain.escrow_logs import removal_event_id
from shared.stack.chain_driver import wait_for
from tests.support.events import body, chain_event, new_escrow_id
from tests.support.openapi import assert_matches
from tests.support.pubsub import envelopes


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


def _late_events(engine, escrow_id: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sqlalchemy.text(
            "SELECT event_id, from_state, to_state, block_number, reverted_at IS NOT NULL FROM settlement.late_events "
            "WHERE escrow_id = :i ORDER BY block_number, log_index"), {"i": int(escrow_id)})]


def _removal_of(event: dict) -> dict:
    """The removal relay publishes when a reorganisation orphans `event`'s log."""
    removal = json.loads(json.dumps(event))
    removal["payload"]["removed"] = True
    removal.update(event_id=removal_event_id(event["event_id"]), causation_id=event["event_id"])
    return removal


def test_an_approval_pushed_after_the_refund_completes_the_history_without_changing_the_state(stack, bus,
                                                                                              owner_engine):
    """created@10, then refunded@13 (legal from created), then the approval@11 the chain made between them:
    the state stays refunded and nothing is published for it, but the escrow's history holds the approval.
    A completion@12 cannot stand between the approval and the refund, nor an approval at the refund's own
    position, nor a second approval after the late one (all another fork's leftovers): only logged. A replay
    of an applied event is not late. The approval's log orphaned later leaves the history, marked reverted."""
    escrow_id = new_escrow_id()
    changes = bus.pull_subscription("settlement.escrows.v1")
    created = chain_event("EscrowCreated", escrow_id, block_number=10)
    refunded = chain_event("EscrowRefunded", escrow_id, block_number=13)
    for event, block in ((created, 10), (refunded, 13)):
        bus.publish("settlement.events.v1", body(event))
        wait_for(lambda b=block: (r := _escrow(owner_engine, escrow_id)) and r.last_block == b, f"block {block}")
    approved = chain_event("EscrowApproved", escrow_id, block_number=11)
    leftover = chain_event("EscrowCompleted", escrow_id, block_number=12)
    same_spot = chain_event("EscrowApproved", escrow_id, block_number=13)  # the refund's position, another log
    second = chain_event("EscrowApproved", escrow_id, block_number=12, log_index=1)  # an approval after the late one
    bus.publish("settlement.events.v1", body(approved))
    wait_for(lambda: _late_events(owner_engine, escrow_id), "the approval recorded late")
    for event in (leftover, same_spot, second):
        bus.publish("settlement.events.v1", body(event))
    bus.publish("settlement.events.v1", body(created), replay="reconcile")
    for event in (leftover, same_spot, second):
        wait_for(lambda e=event: _inbox_outcome(owner_engine, e["event_id"]) == "applied", "leftover consumed")
    time.sleep(1)  # the replay too
    row = _escrow(owner_engine, escrow_id)
    assert (row.state, row.sequence, row.last_block) == ("refunded", 2, 13)
    assert _history(owner_engine, escrow_id) == ["created", "refunded"]
    assert _late_events(owner_engine, escrow_id) == [(approved["event_id"], "created", "approved", 11, False)]
    lines = [entry for entry in _settle_log(stack) if entry.get("event_id") == approved["event_id"]]
    assert any(entry["message"].startswith("late event recorded") for entry in lines)
    # Only the two state changes were published for this escrow (a redelivered copy would be the same).
    def ours(messages):
        return [e for e in envelopes(messages) if e["payload"]["escrow_id"] == escrow_id]

    published = ours(bus.pull(changes, until=lambda messages: len(ours(messages)) >= 2, settle=2.0))
    assert {(e["payload"]["state"], e["payload"]["sequence"]) for e in published} == {("created", 1), ("refunded", 2)}

    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    key = f"{created['payload']['chain_id']}:{created['payload']['contract']}:{escrow_id}"
    detail = requests.get(f"{api}/escrows/{key}", timeout=10)
    assert_matches("/escrows/{id}", "get", detail)
    assert [(e["event_type"], e["from_state"], e["to_state"], e["block_number"], e["reverted_at"])
            for e in detail.json()["late_events"]] == [("EscrowApproved", "created", "approved", 11, None)]

    bus.publish("settlement.events.v1", body(_removal_of(approved)))
    wait_for(lambda: _late_events(owner_engine, escrow_id)[0][4], "the orphaned approval marked reverted")
    assert _history(owner_engine, escrow_id) == ["created", "refunded"]
    assert _escrow(owner_engine, escrow_id).state == "refunded"


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
