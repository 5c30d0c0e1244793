"""Pruning what only grows: daily snapshot partitions, old outbox and inbox rows, deep block hashes.

Each reconcile run calls the database's retention routines (migration 0011), which run as the tables'
owner and refuse values below their floors; fn_reconcile itself may delete nothing. A routine that fails
(a lock it waited 5 s for, say) is logged as an error and tried again by the next run: the other
routines and the reconcile run itself go on.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from shared.db import transaction
from shared.reconcile.settings import SNAPSHOT_PARTITIONS_AHEAD_DAYS, ReconcileSettings

log = logging.getLogger(__name__)


def prune(engine: Engine, tuning: ReconcileSettings) -> dict[str, Any]:
    """Run each retention routine in its own transaction; return what each did (None: it failed)."""
    routines = {
        "snapshot_partitions": ("SELECT ops.roll_snapshot_partitions(:retention, :ahead)",
                                {"retention": tuning.snapshot_retention_days, "ahead": SNAPSHOT_PARTITIONS_AHEAD_DAYS}),
        "messaging_rows": ("SELECT ops.prune_messaging(:outbox_days, :inbox_days, :max_rows)",
                           {"outbox_days": tuning.outbox_retention_days, "inbox_days": tuning.inbox_retention_days,
                            "max_rows": tuning.prune_max_rows}),
        "relay_block_hashes": ("SELECT ops.prune_relay_blocks(:keep)", {"keep": tuning.relay_keep_blocks}),
    }
    done: dict[str, Any] = {}
    for name, (statement, parameters) in routines.items():
        try:
            with transaction(engine) as conn:
                done[name] = conn.execute(text(statement), parameters).scalar_one()
        except DBAPIError as exc:
            done[name] = None
            log.error("retention routine failed; the next run tries again",
                      extra={"routine": name, "error": str(exc.orig)[:300]})
    log.info("retention applied", extra={"pruned": done})
    return done


def rows_removed(done: dict[str, Any]) -> int:
    """How many rows the messaging and block-hash routines deleted."""
    return sum((done.get("messaging_rows") or {}).values()) + (done.get("relay_block_hashes") or 0)
