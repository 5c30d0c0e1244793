"""settle's one-statement path (`apply_at_once`) on PostgreSQL: it writes exactly what the transaction path
writes, and whatever it should not decide it leaves untouched for that path: nothing written, not even the
inbox row. Also under concurrency: two copies of one event, and an escrow changed by another writer between
the read and the statement."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy

from shared.chain.escrow_logs import removal_event_id
from shared.db import connection, get_engine, transaction
from shared.envelope import Envelope
from shared.messaging.consumer import REPLAY_ATTRIBUTE, Consumer, PushedMessage
from shared.settings import DatabaseSettings, Settings
from shared.settlement.service import Settlement, apply_at_once, apply_settlement_event, settle_consumer
from shared.stack.layout import DATABASE, PROJECT_ID
from tests.support.events import body, chain_event, new_escrow_id

CONSUMER = "settle-one-statement-test"
TABLES = ("escrows", "transitions", "late_events")


@pytest.fixture
def settings(database) -> Settings:
    return Settings(service="settle", project_id=PROJECT_ID, publish_timeout_seconds=30, database=DatabaseSettings(
        name=DATABASE, user="fn_settle", host="127.0.0.1", port=database.postgres_port, instance_connection_name=None))


@pytest.fixture
def consumer(settings, owner_engine) -> Consumer:
    yield settle_consumer(settings, CONSUMER)
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text("DELETE FROM settlement.inbox WHERE consumer = :c"), {"c": CONSUMER})


def _message(document: dict, **attributes: str) -> PushedMessage:
    return PushedMessage(message_id="m", data=body(document), attributes=attributes, published_at=datetime.now(UTC))


def _at_once(consumer: Consumer, document: dict, **attributes: str):
    """The one-statement path on a pooled connection: the outbox rows it staged, or None."""
    with connection(get_engine(consumer.settings.database)) as conn:
        return consumer.apply_at_once(conn, _message(document, **attributes), Envelope.from_json(document))


def _in_transaction(consumer: Consumer, document: dict) -> list[Envelope]:
    """The transaction path's handler: the state changes it returns."""
    with transaction(get_engine(consumer.settings.database)) as conn:
        return [event for _, event in apply_settlement_event(conn, Envelope.from_json(document))]


def _escrow_rows(owner_engine, escrow_id: str) -> dict:
    """Everything settle holds of one escrow, and of the events that touched it (inbox and outbox)."""
    with owner_engine.connect() as conn:
        rows = {table: [dict(row) for row in conn.execute(sqlalchemy.text(
            f"SELECT * FROM settlement.{table} WHERE escrow_id = :i ORDER BY 1, 2, 3"), {"i": Decimal(escrow_id)})
            .mappings()] for table in TABLES}
        rows["outbox"] = [dict(row) for row in conn.execute(sqlalchemy.text(
            "SELECT dedupe_key, event_id, topic, envelope, attributes, published_at FROM settlement.outbox "
            "WHERE envelope->'payload'->>'escrow_id' = :i ORDER BY id"), {"i": escrow_id}).mappings()]
        rows["inbox"] = [dict(row) for row in conn.execute(sqlalchemy.text(
            "SELECT consumer, dedupe_key, event_id, event_type, outcome, reason FROM settlement.inbox "
            "WHERE consumer = :c AND event_id IN (SELECT event_id FROM settlement.transitions WHERE escrow_id = :i) "
            "ORDER BY received_at, event_id"), {"c": CONSUMER, "i": Decimal(escrow_id)}).mappings()]
    return rows


def _forget(owner_engine, escrow_id: str) -> None:
    with owner_engine.begin() as conn:
        for table in TABLES:
            conn.execute(sqlalchemy.text(f"DELETE FROM settlement.{table} WHERE escrow_id = :i"),
                         {"i": Decimal(escrow_id)})
        conn.execute(sqlalchemy.text("DELETE FROM settlement.outbox WHERE envelope->'payload'->>'escrow_id' = :i"),
                     {"i": escrow_id})


def _without_write_times(rows: dict) -> dict:
    return {table: [{k: v for k, v in row.items() if k not in ("recorded_at", "id")} for row in table_rows]
            for table, table_rows in rows.items()}


def _lifecycle(steps: list[str], **creation_fields) -> list[dict]:
    escrow_id = new_escrow_id()
    return [chain_event(event_type, escrow_id, 100 + number, **(creation_fields if number == 0 else {}))
            for number, event_type in enumerate(steps)]


LIFECYCLES = {
    "created": (["EscrowCreated"], {}),
    # 9 places: the column keeps 8, rounding half away from zero, and the state change must say the same.
    "created, obligation past the column's places": (["EscrowCreated"], {"obligation_usd": "1234.567890125"}),
    "created, no obligation": (["EscrowCreated"], {"obligation_usd": "0"}),
    # More digits than Python's default decimal context holds (28).
    "created, a large obligation": (["EscrowCreated"], {"obligation_usd": "123456789012345678901234.567890125"}),
    "approved and completed": (["EscrowCreated", "EscrowApproved", "EscrowCompleted"], {}),
    "refunded": (["EscrowCreated", "EscrowRefunded"], {}),
    "approved, then refunded": (["EscrowCreated", "EscrowApproved", "EscrowRefunded"], {}),
}


@pytest.mark.parametrize("case", LIFECYCLES)
def test_the_one_statement_writes_what_the_transaction_writes(consumer, owner_engine, case):
    steps, creation_fields = LIFECYCLES[case]
    documents = _lifecycle(steps, **creation_fields)
    escrow_id = documents[0]["payload"]["escrow_id"]

    staged = [_at_once(consumer, document) for document in documents]
    assert all(rows is not None and len(rows) == 1 for rows in staged), "each step applied by the one statement"
    at_once = _escrow_rows(owner_engine, escrow_id)
    assert [row["event_id"] for row in at_once["inbox"]] == [d["event_id"] for d in documents]
    assert {row["outcome"] for row in at_once["inbox"]} == {"applied"}
    assert [row["published_at"] for row in at_once["outbox"]] == [None] * len(documents)
    # What it staged to publish is what it stored.
    assert [Envelope.from_bytes(rows[0].message.data).to_json() for rows in staged] == \
        [row["envelope"] for row in at_once["outbox"]]

    _forget(owner_engine, escrow_id)
    changes = [change for document in documents for change in _in_transaction(consumer, document)]
    in_transaction = _escrow_rows(owner_engine, escrow_id)
    assert [change.to_json() for change in changes] == [row["envelope"] for row in at_once["outbox"]]
    assert _without_write_times({t: in_transaction[t] for t in TABLES}) == \
        _without_write_times({t: at_once[t] for t in TABLES})
    assert at_once["escrows"][0]["state"] == LIFECYCLE_END[steps[-1]]


LIFECYCLE_END = {"EscrowCreated": "created", "EscrowCompleted": "completed", "EscrowRefunded": "refunded"}


def _created(consumer, **fields) -> tuple[str, dict]:
    """A new escrow, created through the one statement."""
    escrow_id = new_escrow_id()
    creation = chain_event("EscrowCreated", escrow_id, 100, **fields)
    assert _at_once(consumer, creation)
    return escrow_id, creation


def _approval_applied_twice(consumer, owner_engine) -> dict:
    escrow_id, _ = _created(consumer)
    approval = chain_event("EscrowApproved", escrow_id, 101)
    assert _at_once(consumer, approval)
    return approval


def _creation_whose_escrow_row_was_deleted(consumer, owner_engine) -> dict:
    # The inbox holds the event; the escrow row is gone (a hand edit): the claim fails the whole statement,
    # and the transaction path takes it for the duplicate it is (the reconciler restores the row).
    escrow_id, creation = _created(consumer)
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text("DELETE FROM settlement.escrows WHERE escrow_id = :i"), {"i": Decimal(escrow_id)})
    return creation


def _orphaned(owner_engine, document: dict) -> dict:
    """`document`, its log removed by a reorganisation before it arrived."""
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text("INSERT INTO settlement.orphaned_logs (dedupe_key, removal_event_id) "
                                     "VALUES (:k, 'removal')"), {"k": Envelope.from_json(document).dedupe_key})
    return document


def _approval_orphaned_before_it_arrived(consumer, owner_engine) -> dict:
    escrow_id, _ = _created(consumer)
    return _orphaned(owner_engine, chain_event("EscrowApproved", escrow_id, 101))


def _late_approval(consumer, owner_engine) -> dict:
    escrow_id, _ = _created(consumer)
    assert _at_once(consumer, chain_event("EscrowRefunded", escrow_id, 103))
    return chain_event("EscrowApproved", escrow_id, 101)


def _completion_before_approval(consumer, owner_engine) -> dict:
    escrow_id, _ = _created(consumer)
    return chain_event("EscrowCompleted", escrow_id, 101)


def _removal(consumer, owner_engine) -> dict:
    _, creation = _created(consumer)
    return {**creation, "event_id": removal_event_id(creation["event_id"]), "causation_id": creation["event_id"],
            "payload": {**creation["payload"], "removed": True}}


def _creation_of_a_voided_escrow(consumer, owner_engine) -> dict:
    escrow_id, _ = _created(consumer)
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE settlement.escrows SET state = 'voided', sequence = sequence + 1 "
                                     "WHERE escrow_id = :i"), {"i": Decimal(escrow_id)})
    return chain_event("EscrowCreated", escrow_id, 110)


def _compliance_result(consumer, owner_engine) -> dict:
    user_id = new_escrow_id()
    return {"event_id": f"ComplianceScreened:{user_id}:1", "event_type": "ComplianceScreened", "schema_version": 1,
            "occurred_at": "2026-01-01T00:00:00+00:00", "correlation_id": user_id, "causation_id": None,
            "payload": {"user_id": user_id, "decision": "REJECTED", "sequence": 1, "score": 100,
                        "screening_id": 1, "snapshot_id": 1, "trigger": "registration",
                        "wallet_addresses": ["0x" + "5c" * 20], "decided_at": "2026-01-01T00:00:00+00:00"}}


# Each: what the one statement is given (after its setup); it must leave everything as it was.
LEFT_TO_THE_TRANSACTION = {
    "a creation delivered again": lambda consumer, engine: _created(consumer)[1],
    "an approval delivered again": _approval_applied_twice,
    "a creation the inbox holds, its escrow row deleted": _creation_whose_escrow_row_was_deleted,
    "an approval before its escrow exists":
        lambda consumer, engine: chain_event("EscrowApproved", new_escrow_id(), 101),
    "a completion before the approval": _completion_before_approval,
    "an approval after the refund": _late_approval,
    "a creation whose log was orphaned before it arrived":
        lambda consumer, engine: _orphaned(engine, chain_event("EscrowCreated", new_escrow_id(), 100)),
    "an approval whose log was orphaned before it arrived": _approval_orphaned_before_it_arrived,
    "a reorganisation's removal": _removal,
    "a creation reusing a voided escrow's id": _creation_of_a_voided_escrow,
    "a compliance result": _compliance_result,
}


@pytest.mark.parametrize("case", LEFT_TO_THE_TRANSACTION)
def test_what_the_one_statement_does_not_decide_it_leaves_untouched(consumer, owner_engine, case):
    document = LEFT_TO_THE_TRANSACTION[case](consumer, owner_engine)
    escrow_id = document["payload"].get("escrow_id", "0")
    before = _escrow_rows(owner_engine, escrow_id)
    inbox_before = _inbox_size(owner_engine)
    assert _at_once(consumer, document) is None
    assert _escrow_rows(owner_engine, escrow_id) == before
    assert _inbox_size(owner_engine) == inbox_before


def test_a_replay_for_the_reconciler_is_left_to_the_transaction(consumer, owner_engine):
    escrow_id, creation = _created(consumer)
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text("DELETE FROM settlement.escrows WHERE escrow_id = :i"), {"i": Decimal(escrow_id)})
    inbox_before = _inbox_size(owner_engine)
    assert _at_once(consumer, creation, **{REPLAY_ATTRIBUTE: "reconcile"}) is None
    assert _escrow_rows(owner_engine, escrow_id)["escrows"] == []
    assert _inbox_size(owner_engine) == inbox_before


def _inbox_size(owner_engine) -> int:
    with owner_engine.connect() as conn:
        return conn.execute(sqlalchemy.text("SELECT count(*) FROM settlement.inbox WHERE consumer = :c"),
                            {"c": CONSUMER}).scalar_one()


def test_two_copies_of_one_creation_at_once_apply_it_once(consumer, owner_engine):
    creation = chain_event("EscrowCreated", new_escrow_id(), 100)
    start, results = threading.Barrier(2), []

    def deliver() -> None:
        start.wait()
        results.append(_at_once(consumer, creation))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(result is None for result in results) == [False, True]
    rows = _escrow_rows(owner_engine, creation["payload"]["escrow_id"])
    assert [len(rows[table]) for table in ("escrows", "transitions", "inbox", "outbox")] == [1, 1, 1, 1]


def test_an_escrow_changed_after_it_was_read_is_left_to_the_transaction(consumer, settings, owner_engine):
    # The approval is planned on the escrow as read; another writer then moves it on (a refund, holding the
    # row's lock while the statement runs): the statement waits for the lock, finds the escrow no longer as
    # read, and writes nothing.
    escrow_id, _ = _created(consumer)
    approval = chain_event("EscrowApproved", escrow_id, 101)
    engine = get_engine(settings.database)
    with connection(engine) as conn:
        plan = apply_at_once(conn, Envelope.from_json(approval))
    assert plan is not None
    planned = Consumer(CONSUMER, "settlement", settings, Settlement().handle, at_once=lambda conn, envelope: plan)
    result: list = []
    with owner_engine.begin() as other:
        other.execute(sqlalchemy.text("SELECT 1 FROM settlement.escrows WHERE escrow_id = :i FOR UPDATE"),
                      {"i": Decimal(escrow_id)})
        waiting = threading.Thread(target=lambda: result.append(_at_once(planned, approval)))
        waiting.start()
        waiting.join(1.0)
        assert waiting.is_alive(), "the statement waits for the escrow's lock"
        other.execute(sqlalchemy.text("UPDATE settlement.escrows SET state = 'refunded', sequence = 2, "
                                      "last_block = 103 WHERE escrow_id = :i"), {"i": Decimal(escrow_id)})
    waiting.join(30)
    assert result == [None]
    rows = _escrow_rows(owner_engine, escrow_id)
    assert (rows["escrows"][0]["state"], len(rows["transitions"]), len(rows["outbox"])) == ("refunded", 1, 1)
    assert [row["event_id"] for row in rows["inbox"]] == [rows["transitions"][0]["event_id"]]
