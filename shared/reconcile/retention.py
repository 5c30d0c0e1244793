"""Pruning what only grows: daily snapshot partitions, old margin events, old outbox and inbox rows, deep
block hashes.

Each reconcile run calls the database's retention routines (migrations 0011 and 0017), which run as the
tables' owner and refuse values below their floors; fn_reconcile itself may delete nothing. A routine that fails
(a lock it waited 5 s for, say) is logged as an error and tried again by the next run: the other
routines and the reconcile run itself go on. Margin events, the one table whose growth follows the
market (every tier change of every pass), are deleted in rounds until none is left past the retention
or MARGIN_EVENT_PRUNE_SECONDS have passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from shared.db import transaction
from shared.reconcile.settings import SNAPSHOT_PARTITIONS_AHEAD_DAYS, ReconcileSettings

log = logging.getLogger(__name__)


# Seconds one run may spend deleting margin events, in rounds of PRUNE_MAX_ROWS (each its own transaction):
# a busy day's tier changes outnumber what one round a run deletes (see `make bench`).
MARGIN_EVENT_PRUNE_SECONDS = 60.0


def prune(engine: Engine, tuning: ReconcileSettings) -> dict[str, Any]:
    """Run each retention routine in its own transaction; return what each did (None: it failed)."""
    def call(statement: str, **parameters: Any) -> Callable[[], Any]:
        def run() -> Any:
            with transaction(engine) as conn:
                return conn.execute(text(statement), parameters).scalar_one()
        return run

    routines: dict[str, Callable[[], Any]] = {
        "snapshot_partitions": call("SELECT ops.roll_snapshot_partitions(:retention, :ahead)",
                                    retention=tuning.snapshot_retention_days, ahead=SNAPSHOT_PARTITIONS_AHEAD_DAYS),
        "margin_events": partial(_in_rounds, call("SELECT ops.prune_margin_events(:retention, :max_rows)",
                                                  retention=tuning.margin_event_retention_days,
                                                  max_rows=tuning.prune_max_rows), tuning.prune_max_rows),
        "messaging_rows": call("SELECT ops.prune_messaging(:outbox_days, :inbox_days, :max_rows)",
                               outbox_days=tuning.outbox_retention_days, inbox_days=tuning.inbox_retention_days,
                               max_rows=tuning.prune_max_rows),
        "relay_block_hashes": call("SELECT ops.prune_relay_blocks(:keep)", keep=tuning.relay_keep_blocks),
    }
    done: dict[str, Any] = {}
    for name, routine in routines.items():
        try:
            done[name] = routine()
        except DBAPIError as exc:
            done[name] = None
            log.error("retention routine failed; the next run tries again",
                      extra={"routine": name, "error": str(exc.orig)[:300]})
    log.info("retention applied", extra={"pruned": done})
    return done


def _in_rounds(round_: Callable[[], int], max_rows: int) -> int:
    """Rounds of a routine deleting at most `max_rows` each, until one deletes fewer or
    MARGIN_EVENT_PRUNE_SECONDS have passed; the rows they deleted."""
    deadline = time.monotonic() + MARGIN_EVENT_PRUNE_SECONDS
    removed = 0
    while True:
        deleted = round_()
        removed += deleted
        if deleted < max_rows or time.monotonic() >= deadline:
            return removed


def rows_removed(done: dict[str, Any]) -> int:
    """How many rows the margin-event, messaging and block-hash routines deleted."""
    return ((done.get("margin_events") or 0) + sum((done.get("messaging_rows") or {}).values())
            + (done.get("relay_block_hashes") or 0))
