"""Reads of notify's tables, which hold 90 days of every alert, go by index, never by scanning a table: the
api's notification history, and the callbacks that came before a send (read by every email and SMS sent).

The planner is told to avoid sequential scans (`enable_seqscan = off`): with a usable index it takes it,
and without one it still scans, which the plan shows. Measured at volume: a user's 100 deliveries among
200k (400k attempts) took 3.9 s without the attempts' index, 14 ms with it (migration 0018); a send's early
callbacks among 1M callbacks took 79 ms without the callbacks' indexes, 0.4 ms with them (migration 0020).
"""

from __future__ import annotations

import pytest
import sqlalchemy
from sqlalchemy.dialects import postgresql

from shared.api.notification_queries import _HISTORY
from shared.notify.statuses import _EARLY_CALLBACKS

# The statement as notify runs it, its parameters written in (EXPLAIN takes no bound ones here).
EARLY_CALLBACKS = str(_EARLY_CALLBACKS.params(delivery_id=1, provider_message_id="SG.m").compile(
    dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


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
        plan = _plan(conn, EARLY_CALLBACKS, {})
    assert "provider_events_by_delivery" in plan and "provider_events_by_provider_message" in plan, plan
    assert "Seq Scan" not in plan and "provider_events_pkey" not in plan, plan
