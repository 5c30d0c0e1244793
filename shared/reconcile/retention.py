"""Pruning what only grows: daily snapshot partitions, old margin events and notifications, old price history
and rejected messages, old outbox and inbox rows, deep block hashes.

Each reconcile run calls the database's retention routines (migrations 0011, 0017, 0018, 0019), which run as the
tables' owner and refuse values below their floors; fn_reconcile itself may delete nothing. A routine that fails
(a lock it waited 5 s for, say) is logged as an error and tried again by the next run: the other
routines and the reconcile run itself go on. Margin events and notify's deliveries, whose growth follows
the market (every tier change of every pass, every alert), are deleted in rounds until none is left past
the retention or PRUNE_ROUNDS_SECONDS have passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from shared.db import DatabaseError, Engine, connection, sql
from shared.errors import DatabaseUnavailable
from shared.reconcile.settings import SNAPSHOT_PARTITIONS_AHEAD_DAYS, ReconcileSettings

log = logging.getLogger(__name__)


# Seconds one run may spend on each routine that deletes in rounds of PRUNE_MAX_ROWS (each its own
# transaction): a busy day's tier changes and alerts outnumber what one round a run deletes (see `make bench`).
PRUNE_ROUNDS_SECONDS = 60.0


def prune(engine: Engine, tuning: ReconcileSettings) -> dict[str, Any]:
    """Run each retention routine in its own transactions; return what each did (None: it failed)."""
    def call(statement: str, **parameters: Any) -> Callable[[], Any]:
        def run() -> Any:
            # One statement, its own transaction: sent alone (autocommitted), one round trip instead of three.
            with connection(engine) as conn:
                return conn.execute(sql(statement), parameters).scalar_one()
        return run

    max_rows = tuning.prune_max_rows
    prune_margin_events = call("SELECT ops.prune_margin_events(:retention, :max_rows)",
                               retention=tuning.margin_event_retention_days, max_rows=max_rows)
    routines: dict[str, Callable[[], Any]] = {
        "snapshot_partitions": call("SELECT ops.roll_snapshot_partitions(:retention, :ahead)",
                                    retention=tuning.snapshot_retention_days, ahead=SNAPSHOT_PARTITIONS_AHEAD_DAYS),
        "margin_events": partial(_in_rounds, lambda: {"risk.margin_events": prune_margin_events()}, max_rows),
        "notifications": partial(_in_rounds, call("SELECT ops.prune_notifications(:retention, :max_rows)",
                                                  retention=tuning.notification_retention_days,
                                                  max_rows=max_rows), max_rows),
        "price_history": call("SELECT ops.prune_price_history(:retention, :max_rows)",
                              retention=tuning.price_history_retention_days, max_rows=max_rows),
        "rejected_messages": call("SELECT ops.prune_rejected_messages(:retention, :max_rows)",
                                  retention=tuning.rejected_message_retention_days, max_rows=max_rows),
        "messaging_rows": call("SELECT ops.prune_messaging(:outbox_days, :inbox_days, :max_rows)",
                               outbox_days=tuning.outbox_retention_days, inbox_days=tuning.inbox_retention_days,
                               max_rows=max_rows),
        "relay_block_hashes": call("SELECT ops.prune_relay_blocks(:keep)", keep=tuning.relay_keep_blocks),
    }
    done: dict[str, Any] = {}
    for name, routine in routines.items():
        try:
            done[name] = routine()
        except (DatabaseError, DatabaseUnavailable) as exc:
            done[name] = None
            # The next run tries again; terraform/monitoring.tf alerts when a routine keeps failing.
            log.error("retention routine failed", extra={"routine": name, "error": str(exc)[:300]})
    log.info("retention applied", extra={"pruned": done})
    return done


def _in_rounds(round_: Callable[[], dict[str, int]], max_rows: int) -> dict[str, int]:
    """Calls of a routine deleting at most `max_rows` a table each (it returns the rows deleted per table),
    until a call deletes fewer from every table or PRUNE_ROUNDS_SECONDS have passed; the rows deleted."""
    deadline = time.monotonic() + PRUNE_ROUNDS_SECONDS
    removed: dict[str, int] = {}
    while True:
        deleted = round_()
        for table, rows in deleted.items():
            removed[table] = removed.get(table, 0) + rows
        if all(rows < max_rows for rows in deleted.values()) or time.monotonic() >= deadline:
            return removed


def rows_removed(done: dict[str, Any]) -> int:
    """How many rows the routines that delete rows deleted (all but the snapshot partitions')."""
    counted_per_table = ("margin_events", "notifications", "price_history", "rejected_messages", "messaging_rows")
    return (sum(sum((done.get(name) or {}).values()) for name in counted_per_table)
            + (done.get("relay_block_hashes") or 0))
