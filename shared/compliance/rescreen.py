"""Fanning a rescreening out: the users behind the newest list snapshot, split into shards of rescreen keys.

refresh-sanctions plans once per snapshot (`plan_rescreen`): it counts the users behind, picks enough
shards for about `shard_users` users each, records the plan and stages one RescreenRequested per shard in
the outbox, in one transaction. The `rescreen` function rescreens one shard per message. A user is
rescreened once per snapshot: the rescreen moves its `last_snapshot_id` in the same transaction, so a
redelivered or re-planned shard finds nobody left to do. If users are still behind `replan_seconds`
after the last plan (a shard held as a dead letter, say), the next tick plans a new generation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.compliance import RESCREEN_KEYS, SCHEMA
from shared.compliance.lists import latest_snapshot_id
from shared.db import Connection, sql
from shared.envelope import Envelope, utc_iso
from shared.events import RESCREEN_REQUESTED

log = logging.getLogger(__name__)


def shard_ranges(shards: int) -> list[tuple[int, int]]:
    """`shards` contiguous [from, to) ranges covering every rescreen key exactly once."""
    if not 1 <= shards <= RESCREEN_KEYS:
        raise ValueError(f"shards must be 1 to {RESCREEN_KEYS}")
    bounds = [shard * RESCREEN_KEYS // shards for shard in range(shards + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


@dataclass(frozen=True)
class RescreenPlan:
    """One fan-out: which snapshot, which generation, how many shards for how many users."""

    snapshot_id: int
    generation: int
    shards: int
    users_behind: int

    def requests(self) -> list[Envelope]:
        """One RescreenRequested per shard, with deterministic ids."""
        now = utc_iso(datetime.now(UTC))
        correlation = f"Rescreen:{self.snapshot_id}:{self.generation}"
        return [Envelope(
            event_id=f"{RESCREEN_REQUESTED}:{self.snapshot_id}:{self.generation}:{shard}",
            event_type=RESCREEN_REQUESTED, schema_version=1, occurred_at=now, correlation_id=correlation,
            causation_id=correlation,
            payload={"snapshot_id": self.snapshot_id, "generation": self.generation, "shard": shard,
                     "shards": self.shards, "key_from": key_from, "key_to": key_to},
        ) for shard, (key_from, key_to) in enumerate(shard_ranges(self.shards))]


_USERS_BEHIND = sql(f"SELECT count(*) FROM {SCHEMA}.subjects WHERE last_snapshot_id < :snapshot_id")
_LAST_PLAN = sql(f"SELECT * FROM {SCHEMA}.rescreen_plans WHERE snapshot_id = :snapshot_id "
                 "ORDER BY generation DESC LIMIT 1 FOR UPDATE")
_RECORD_PLAN = sql(f"INSERT INTO {SCHEMA}.rescreen_plans (snapshot_id, generation, shards, users_behind) "
                   "VALUES (:snapshot_id, :generation, :shards, :users_behind)")


def plan_rescreen(conn: Connection, shard_users: int, replan_seconds: float) -> RescreenPlan | None:
    """A new plan for the users behind the newest snapshot, recorded; None when there is nothing new to do."""
    snapshot_id = latest_snapshot_id(conn)
    if snapshot_id is None:
        return None
    behind: int = conn.execute(_USERS_BEHIND, {"snapshot_id": snapshot_id}).scalar_one()
    if not behind:
        return None
    last = conn.execute(_LAST_PLAN, {"snapshot_id": snapshot_id}).mappings().first()
    if last is not None and last["planned_at"] > datetime.now(UTC) - timedelta(seconds=replan_seconds):
        log.info("rescreening in progress", extra={"snapshot_id": snapshot_id, "users_behind": behind,
                                                    "generation": last["generation"], "shards": last["shards"]})
        return None
    plan = RescreenPlan(snapshot_id, (last["generation"] + 1) if last else 1,
                        min(RESCREEN_KEYS, math.ceil(behind / shard_users)), behind)
    conn.execute(_RECORD_PLAN, {"snapshot_id": plan.snapshot_id, "generation": plan.generation,
                                "shards": plan.shards, "users_behind": plan.users_behind})
    log.info("rescreening fanned out" if plan.generation == 1 else "rescreening fanned out again: users still behind",
             extra={"snapshot_id": snapshot_id, "generation": plan.generation, "shards": plan.shards,
                    "users_behind": behind})
    return plan
