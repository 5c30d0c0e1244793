"""A reconcile run's repairs are bounded in time, and what one run defers the next one repairs, on PostgreSQL.

A run that found many drifts, each slow to repair (a replay read a week of outbox rows: 0.65-0.8 s among 1M),
ran past its function's timeout: killed before it recorded its run or pruned anything, every 5 minutes; and
one repair that raised ended the run there. Now a run repairs for REPAIR_SECONDS, records the rest (and any
repair that failed) unrepaired, and ends; the next run, which finds them again, repairs them.
"""

from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy

from shared.reconcile import service
from shared.reconcile.service import (
    NOTIFY_MISSING,
    REPAIR_DEFERRED,
    REPAIR_FAILED,
    RISK_DIFFERS,
    SETTLEMENT_MISSING,
    Drift,
    taking_turns,
)
from tests.support.database import engine_as
from tests.support.reconcile import reconciler_on

SLOW_REPAIR_SECONDS = 0.5


@pytest.fixture
def keys(owner_engine):
    """Drift keys of the test's own, their ops.drifts rows removed afterwards."""
    prefix = f"repairs-{uuid.uuid4().hex[:10]}"
    yield [f"{prefix}:{i}" for i in range(4)]
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text("DELETE FROM ops.drifts WHERE key LIKE :p"), {"p": f"{prefix}:%"})


def _drifts(owner_engine, keys: list[str]) -> dict[str, dict]:
    with owner_engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text(
            "SELECT key, repair, repaired_at, seen_count, resolved_at FROM ops.drifts WHERE key = ANY(:k)"),
            {"k": keys}).mappings().all()
    return {row["key"]: dict(row) for row in rows}


def test_a_run_repairs_until_its_time_is_spent_records_the_rest_and_the_next_run_repairs_them(
        database, owner_engine, keys, monkeypatch):
    repaired: list[str] = []

    def slow_repair(key: str) -> str:
        time.sleep(SLOW_REPAIR_SECONDS)
        repaired.append(key)
        return f"replayed {key}"

    found = [Drift(RISK_DIFFERS, key, {"state": "approved"}, {"state": "created"},
                   repair=lambda key=key: slow_repair(key)) for key in keys]
    reconciler = reconciler_on(database)
    monkeypatch.setattr(service, "REPAIR_SECONDS", SLOW_REPAIR_SECONDS / 2)
    with engine_as(database, "fn_reconcile") as engine:
        started = time.monotonic()
        first, deferred = reconciler.repair_and_record(engine, found)
        took = time.monotonic() - started

        assert repaired == keys[:1] and deferred == 3
        assert took < 2 * SLOW_REPAIR_SECONDS  # the three others were not attempted
        assert first == [(RISK_DIFFERS, keys[0], f"replayed {keys[0]}"),
                         *[(RISK_DIFFERS, key, None) for key in keys[1:]]]
        recorded = _drifts(owner_engine, keys)
        assert recorded[keys[0]]["repair"] == f"replayed {keys[0]}" and recorded[keys[0]]["repaired_at"] is not None
        for key in keys[1:]:
            assert recorded[key]["repair"] == REPAIR_DEFERRED and recorded[key]["repaired_at"] is None

        monkeypatch.setattr(service, "REPAIR_SECONDS", 60.0)
        second, deferred = reconciler.repair_and_record(engine, found[1:])

    assert repaired == keys and deferred == 0
    assert second == [(RISK_DIFFERS, key, f"replayed {key}") for key in keys[1:]]
    recorded = _drifts(owner_engine, keys)
    for key in keys[1:]:
        assert recorded[key]["repair"] == f"replayed {key}" and recorded[key]["repaired_at"] is not None
        assert recorded[key]["seen_count"] == 2 and recorded[key]["resolved_at"] is None
    assert recorded[keys[0]]["seen_count"] == 1


def test_a_drift_with_no_safe_repair_is_left_for_a_person_not_counted_as_deferred(
        database, owner_engine, keys, monkeypatch):
    monkeypatch.setattr(service, "REPAIR_SECONDS", 0.0)
    found = [Drift(RISK_DIFFERS, keys[0], {"state": "approved"}, {"state": "created"}, repair=None)]
    with engine_as(database, "fn_reconcile") as engine:
        recorded, deferred = reconciler_on(database).repair_and_record(engine, found)

    assert recorded == [(RISK_DIFFERS, keys[0], None)] and deferred == 0
    assert _drifts(owner_engine, keys[:1])[keys[0]]["repair"] is None


def test_a_repair_that_fails_is_recorded_with_its_error_and_the_run_goes_on(database, owner_engine, keys, caplog):
    """Pub/Sub unreachable for a republish, say: the drift stays recorded, unrepaired, for the next run."""
    def unreachable() -> str:
        raise ConnectionError("publish failed")

    found = [Drift(RISK_DIFFERS, keys[0], {"state": "approved"}, {"state": "created"}, repair=unreachable),
             Drift(RISK_DIFFERS, keys[1], {"state": "approved"}, {"state": "created"}, repair=lambda: "replayed")]
    with engine_as(database, "fn_reconcile") as engine:
        recorded, deferred = reconciler_on(database).repair_and_record(engine, found)

    assert recorded == [(RISK_DIFFERS, keys[0], None), (RISK_DIFFERS, keys[1], "replayed")] and deferred == 0
    rows = _drifts(owner_engine, keys[:2])
    assert rows[keys[0]]["repair"] == f"{REPAIR_FAILED}: ConnectionError" and rows[keys[0]]["repaired_at"] is None
    assert rows[keys[1]]["repair"] == "replayed" and rows[keys[1]]["repaired_at"] is not None
    assert any(r.message.startswith("reconcile repair failed") and r.exc_info for r in caplog.records)

def test_the_kinds_take_turns_so_one_kinds_many_repairs_defer_no_other_kind():
    def drift(kind: str, key: str) -> Drift:
        return Drift(kind, key, None, None)

    found = [drift(SETTLEMENT_MISSING, f"s{i}") for i in range(3)] + [drift(RISK_DIFFERS, "r0")] + [
        drift(NOTIFY_MISSING, f"n{i}") for i in range(2)]

    assert [d.key for d in taking_turns(found)] == ["s0", "r0", "n0", "s1", "n1", "s2"]
    assert taking_turns([]) == []
