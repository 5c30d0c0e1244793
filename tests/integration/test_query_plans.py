"""The api's notification history, over notify's tables that only grow, reads by index, never by scanning a table.

The planner is told to avoid sequential scans (`enable_seqscan = off`): with a usable index it takes it,
and without one it still scans, which the plan shows. Measured at volume (a user's 100 deliveries among
200k, 400k attempts): the api's notification history took 3.9 s without the attempts' index, 14 ms with it.
"""

from __future__ import annotations

import pytest
import sqlalchemy

from shared.api.notification_queries import _HISTORY


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
