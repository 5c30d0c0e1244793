"""Reads of tables that only grow, or hold 90 days of every alert, go by index, never by scanning a table:
the api's notification history, the callbacks that came before a send (read by every email and SMS sent),
the alerts a correction retracts, the api's compliance history of a user (its reviews), and the chain logs
relayed lately that every reconcile run asks for (relay keeps every log it ever relayed), and the state change
the reconciler replays for each drifted projection.

The planner is told to avoid sequential scans (`enable_seqscan = off`): with a usable index it takes it,
and without one it still scans, which the plan shows. Measured at volume: a user's 100 deliveries among
200k (400k attempts) took 3.9 s without the attempts' index, 14 ms with it (migration 0018); a send's early
callbacks among 1M callbacks took 79 ms without the callbacks' indexes, 0.4 ms with them (migration 0020); the
escrows with a log relayed in the last hour, among 2M logs, 0.70 s without relayed_logs_by_time (0022).
"""

from __future__ import annotations

import pytest
import sqlalchemy

from shared.api.compliance_queries import _REVIEWS_OF_USER
from shared.api.notification_queries import _HISTORY
from shared.notify.service import _ALERTS_OF_ESCROW
from shared.notify.statuses import _EARLY_CALLBACKS
from shared.reconcile.service import PUBLISHED_STATE_CHANGE, RELAYED_WITHIN, TRANSITION_CAUSE


def _plan(conn, statement: str, parameters: dict) -> str:
    conn.execute(sqlalchemy.text("SET LOCAL enable_seqscan = off"))
    return "\n".join(conn.execute(sqlalchemy.text(f"EXPLAIN {statement}"), parameters).scalars())


@pytest.mark.parametrize("statement, parameters, table", [
    (_HISTORY, {"user_id": "u", "limit": 100}, "delivery_attempts"),
    (_HISTORY, {"user_id": "u", "limit": 100}, "deliveries"),
])
def test_the_notification_history_reads_by_index(owner_engine, statement, parameters, table):
    with owner_engine.connect() as conn, conn.begin():
        plan = _plan(conn, statement, parameters)
    assert f"Seq Scan on {table}" not in plan, plan


def test_a_sends_early_callbacks_are_read_by_delivery_and_by_provider_message_id(owner_engine):
    """Both sides of the OR by their index (without them, the planner walks the whole key in id order)."""
    with owner_engine.connect() as conn, conn.begin():
        plan = _plan(conn, _EARLY_CALLBACKS.text, {"delivery_id": 1, "provider_message_id": "SG.m"})
    assert "provider_events_by_delivery" in plan and "provider_events_by_provider_message" in plan, plan
    assert "Seq Scan" not in plan and "provider_events_pkey" not in plan, plan


@pytest.mark.parametrize("statement, parameters, table, index", [
    (_ALERTS_OF_ESCROW.text, {"correlation_id": "31337:0xabc:0", "alert": "MarginTierChanged",
                              "reached": ["sent", "delivered"]}, "deliveries", "deliveries_by_correlation"),
    (_REVIEWS_OF_USER.text, {"user_id": "u"}, "reviews", "reviews_by_user"),
])
def test_a_corrections_alerts_and_a_users_reviews_are_read_by_index(owner_engine, statement, parameters, table,
                                                                    index):
    with owner_engine.connect() as conn, conn.begin():
        plan = _plan(conn, statement, parameters)
    assert index in plan, plan
    assert f"Seq Scan on {table}" not in plan and f"{table}_pkey" not in plan, plan


def test_the_logs_relayed_lately_are_read_by_time_not_by_every_log_of_the_contract(owner_engine):
    """The contract's other index (by block position) would also avoid a sequential scan, yet read every log
    the contract ever had: relayed_at must bound the index scan itself. On a month of a contract's logs, with
    the statistics they give (both rolled back with the transaction)."""
    contract = "0xplan" + "0" * 36
    with owner_engine.connect() as conn, conn.begin():
        conn.execute(sqlalchemy.text(
            "INSERT INTO relay.relayed_logs (dedupe_key, event_id, chain_id, contract, block_number, log_index, "
            "envelope, relayed_at) SELECT 'plan:' || i, 'plan:' || i, 31337, :a, i, 0, "
            "jsonb_build_object('payload', jsonb_build_object('escrow_id', i::text)), "
            "now() - make_interval(secs => i * 130) FROM generate_series(1, 20000) AS i"), {"a": contract})
        conn.execute(sqlalchemy.text("ANALYZE relay.relayed_logs"))
        plan = _plan(conn, RELAYED_WITHIN.text, {"c": 31337, "a": contract, "seconds": 3600})
    assert "relayed_logs_by_time" in plan, plan
    [condition] = [line for line in plan.splitlines() if "Index Cond" in line]
    assert "relayed_at" in condition, plan


@pytest.mark.parametrize("statement, parameters, index", [
    (TRANSITION_CAUSE.text, {"c": 31337, "a": "0xabc", "i": 7, "s": 2},
     "transitions_chain_id_contract_escrow_id_sequence_key"),
    (PUBLISHED_STATE_CHANGE.text, {"dedupe_key": "EscrowStateChanged:x"}, "outbox_dedupe_key_key"),
])
def test_a_replayed_state_change_is_found_by_unique_index(owner_engine, statement, parameters, index):
    """Matched on the envelope's payload, each replay walked the outbox's week of rows (0.65-0.8 s among 1M)."""
    with owner_engine.connect() as conn, conn.begin():
        plan = _plan(conn, statement, parameters)
    assert index in plan and "Seq Scan" not in plan, plan
