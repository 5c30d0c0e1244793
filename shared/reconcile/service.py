"""One reconcile run: redrive dead letters, then compare each copy of the data with its source.

    chain          -> settlement   each escrow's state and terms, read from the contract at relay's checkpoint
    settlement     -> risk         the projection of every escrow: state, sequence, parties, amounts
    risk           -> notify       every margin event (and retraction) seen by notify
    identity       -> notify, compliance; compliance -> settlement: each registered user's copies (users.py)
    every outbox                   no row left unpublished beyond the grace period

What changed within `RECONCILE_GRACE_SECONDS` is left alone: it may still be in flight. Each drift is
recorded in `ops.drifts` (kind, key, both sides, first and last seen), logged as one `reconcile drift`
line (a log-based metric alerts on it), and repaired when that is safe: the source's own events are
republished with their ids, marked as a replay (see shared/messaging/consumer.py), so the copy applies
what it lacks and drops what it has. An escrow the contract holds but relay never relayed (a provider
left its log out) is backfilled: relay is asked, on relay.tick, to rescan from the escrow's creation
block. Whatever else cannot be explained by a source is left for a person, with the evidence.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import zip_longest

from shared import topics
from shared.addresses import checksum_address
from shared.db import Engine, get_engine, sql, transaction
from shared.events import MARGIN_TIER_CHANGED
from shared.messaging import outbox
from shared.messaging.consumer import REPLAY_ATTRIBUTE, REPLAY_BY_RECONCILER
from shared.pubsub import OutgoingMessage, publish_all
from shared.reconcile import SCHEMA, retention
from shared.reconcile.chain import ContractView
from shared.reconcile.drift import MAX_DRIFTS_PER_KIND, Drift
from shared.reconcile.redrive import redrive_dead_letters
from shared.reconcile.settings import ReconcileSettings
from shared.reconcile.users import USER_COMPARISONS
from shared.relay.settings import ChainSettings
from shared.risk import margin_events
from shared.risk.settings import RiskSettings
from shared.settings import Settings
from shared.settlement.states import state_change_id
from shared.topology import load_topology

log = logging.getLogger(__name__)

# Schemas with an outbox, in pipeline order.
OUTBOX_SCHEMAS = ("relay", "settlement", "identity", "pricing", "risk", "compliance")
# Escrows whose chain log was relayed this recently (and outside the grace) are read from the chain on every run.
RECENT_SECONDS = 3600
# Rows of risk's outbox looked at for notify's copy, newest first.
NOTIFY_WINDOW_SECONDS = 86400
# Publish rounds one run spends on one stale outbox (of outbox.PUBLISH_BATCH rows; of
# margin_events.PUBLISH_ROUND events for risk's margin events).
MAX_PUBLISH_ROUNDS = 20
# Seconds one run spends repairing; the drifts found after that are repaired by the next run. The run's
# other steps (redrive, comparisons, pruning up to retention.PRUNE_ROUNDS_SECONDS a routine) need the rest
# of the function's timeout (shared/topology.yaml).
REPAIR_SECONDS = 60.0
REPAIR_DEFERRED = "deferred to the next run: this run's repair time is spent"
REPAIR_FAILED = "repair failed; the next run tries again"

SETTLEMENT_MISSING = "settlement_missing"
SETTLEMENT_DIFFERS = "settlement_differs"
RISK_MISSING = "risk_missing"
RISK_DIFFERS = "risk_differs"
NOTIFY_MISSING = "notify_missing"
OUTBOX_UNPUBLISHED = "outbox_unpublished"
# Risk's margin events are their own outbox (shared/risk/margin_events.py).
MARGIN_EVENTS_OUTBOX = "risk.margin_events"


# The escrows of a contract with a chain log relayed in the last :seconds (by relayed_logs_by_time, 0022).
RELAYED_WITHIN = sql(
    "SELECT DISTINCT envelope->'payload'->>'escrow_id' FROM relay.relayed_logs WHERE chain_id = :c "
    "AND contract = :a AND relayed_at > now() - make_interval(secs => :seconds)")

# The state change settle published for an escrow's transition: the transition's cause (by the escrow's key and
# sequence), then the outbox row by the id derived from it (shared/settlement/states.py, state_change_id). Both
# by unique index: matched on the envelope's payload instead, each replay read the outbox's week of rows
# (0.65-0.8 s among 1M), and a thousand drifts took a run past its timeout.
TRANSITION_CAUSE = sql(
    "SELECT dedupe_key FROM settlement.transitions WHERE chain_id = :c AND contract = :a AND escrow_id = :i "
    "AND sequence = :s")
PUBLISHED_STATE_CHANGE = sql(
    "SELECT topic, envelope, attributes FROM settlement.outbox WHERE dedupe_key = :dedupe_key "
    "AND published_at IS NOT NULL")

# The escrows settled before the grace period (:grace seconds) whose projection in risk is missing or differs
# in state, sequence, depositor, amount or obligation, in key order, at most :limit. Risk holds the
# collateral in whole tokens of a known asset (its symbol set), so it is scaled back by the asset's decimals
# (:decimals, a JSON object of token -> decimals) and truncated to the integer the chain holds.
_RISK_DIFFERS_FROM_SETTLEMENT = sql(
    "SELECT * FROM (SELECT e.chain_id, e.contract, e.escrow_id, e.state, e.sequence, e.depositor, e.amount, "
    "e.obligation_usd, p.state AS p_state, p.sequence AS p_sequence, p.depositor AS p_depositor, "
    "trunc(p.collateral_amount * power(10::numeric, CASE WHEN p.asset_symbol IS NULL THEN 0 "
    "ELSE coalesce(CAST(CAST(:decimals AS jsonb) ->> e.asset AS integer), 0) END)) AS p_amount, "
    "p.obligation_usd AS p_obligation "
    "FROM settlement.escrows e LEFT JOIN risk.positions p USING (chain_id, contract, escrow_id) "
    "WHERE e.recorded_at < now() - make_interval(secs => :grace)) AS pair "
    "WHERE p_state IS NULL OR (p_state, p_sequence, p_depositor, p_amount, p_obligation) "
    "IS DISTINCT FROM (state, sequence, depositor, amount, obligation_usd) "
    "ORDER BY chain_id, contract, escrow_id LIMIT :limit")

# The creation blocks of the escrows settle holds just below and just above an id (ids are handed out in
# block order, so the id's own creation block lies between them).
_NEIGHBOURS_CREATED = sql(
    "SELECT (SELECT created_block FROM settlement.escrows WHERE chain_id = :c AND contract = :a AND escrow_id < :i "
    "ORDER BY escrow_id DESC LIMIT 1), (SELECT created_block FROM settlement.escrows WHERE chain_id = :c "
    "AND contract = :a AND escrow_id > :i ORDER BY escrow_id LIMIT 1)")

# Per outbox of OUTBOX_SCHEMAS, and risk's margin events (their own outbox): the rows unpublished
# beyond the grace period (:grace seconds) and not leased to a publisher, the oldest's time, the first event
# id. One statement: seven transactions took 21 round trips of every run.
_UNPUBLISHED = sql(" UNION ALL ".join(
    [f"(SELECT '{schema}.outbox' AS outbox, count(*) AS rows, min(created_at) AS oldest, min(event_id) AS example "
     f"FROM {schema}.outbox WHERE published_at IS NULL AND created_at < now() - make_interval(secs => :grace) "
     f"AND {outbox.LEASE_ENDED})" for schema in OUTBOX_SCHEMAS]
    + [f"(SELECT '{MARGIN_EVENTS_OUTBOX}', count(*), min(occurred_at), min(event_id) FROM risk.margin_events "
       "WHERE published_at IS NULL AND occurred_at < now() - make_interval(secs => :grace))"]))

# Drifts this run did not find again are resolved.
_RESOLVE_DRIFTS_NOT_SEEN = sql(f"UPDATE {SCHEMA}.drifts SET resolved_at = now() WHERE resolved_at IS NULL "
                               "AND NOT (kind || '|' || key) = ANY(CAST(:seen AS text[]))")
_RECORD_RUN = sql(f"INSERT INTO {SCHEMA}.runs (started_at, checked, drifts, repaired, redriven, held) "
                  "VALUES (:started_at, CAST(:checked AS jsonb), :drifts, :repaired, :redriven, :held)")
_SWEEP_CURSOR = sql(f"SELECT next_escrow_id FROM {SCHEMA}.sweep_cursors WHERE chain_id = :c AND contract = :a")
_MOVE_SWEEP_CURSOR = sql(f"INSERT INTO {SCHEMA}.sweep_cursors (chain_id, contract, next_escrow_id) "
                         "VALUES (:c, :a, :next) ON CONFLICT (chain_id, contract) "
                         "DO UPDATE SET next_escrow_id = EXCLUDED.next_escrow_id")
# An open drift (of its kind and key) is seen once more; a resolved one is opened again as a new row.
_RECORD_DRIFT = sql(
    f"INSERT INTO {SCHEMA}.drifts AS d (kind, key, source, replica, repair, repaired_at) VALUES (:kind, :key, "
    "CAST(:source AS jsonb), CAST(:replica AS jsonb), :repair, CASE WHEN :repaired THEN now() END) "
    "ON CONFLICT (kind, key) WHERE resolved_at IS NULL DO UPDATE SET source = EXCLUDED.source, "
    "replica = EXCLUDED.replica, last_seen_at = now(), seen_count = d.seen_count + 1, repair = EXCLUDED.repair, "
    "repaired_at = EXCLUDED.repaired_at")


@dataclass(frozen=True)
class RunSummary:
    """What one run found and did."""

    checked: dict
    drifts: list[tuple[str, str, str | None]]
    redriven: int
    held: int
    seconds: float

    @property
    def clean(self) -> bool:
        return not self.drifts and not self.held


def taking_turns(found: list[Drift]) -> list[Drift]:
    """The drifts with their kinds taking turns (one of each kind, in the order the kinds were found, then
    again), each kind's drifts in the order found."""
    by_kind: dict[str, list[Drift]] = {}
    for drift in found:
        by_kind.setdefault(drift.kind, []).append(drift)
    return [drift for turn in zip_longest(*by_kind.values()) for drift in turn if drift is not None]


class Reconciler:
    """Compares the domains for one deployment (one chain and escrow contract)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.chain = settings.part(ChainSettings)
        self.tuning = settings.part(ReconcileSettings)
        self.decimals = {asset.token: asset.decimals for asset in settings.part(RiskSettings).assets}
        # The contract as the payloads spell it (checksummed); relay's tables key it in lower case.
        self.contract = checksum_address(self.chain.escrow_address)
        self.contract_view = ContractView(self.chain.rpc_url, self.contract)

    def _engine(self) -> Engine:
        return get_engine(self.settings.database)

    def run_tick(self) -> RunSummary:
        """One run: redrive, compare, repair, record."""
        started, clock = datetime.now(UTC), time.monotonic()
        engine = self._engine()
        with ThreadPoolExecutor(1) as beside:
            # Pruning deletes only rows past their retention, which nothing else in a run reads or writes:
            # it runs beside the rest, on a pooled connection of its own (its routines mostly wait on the
            # database, the redrive on Pub/Sub).
            pruning = beside.submit(retention.prune, engine, self.tuning)
            redriven = redrive_dead_letters(engine, load_topology(), self.settings.project_id,
                                            self.tuning.redrive_max, self.settings.publish_timeout_seconds)
            checked: dict[str, int] = {}
            found = (self.unpublished_outboxes(engine, checked) + self.chain_vs_settlement(engine, checked)
                     + self.settlement_vs_risk(engine, checked) + self.risk_vs_notify(engine, checked)
                     + [drift for compare in USER_COMPARISONS
                        for drift in compare(engine, self.tuning.grace_seconds, checked, self._republish)])
            recorded, checked["repairs deferred"] = self.repair_and_record(engine, found)
            pruned = pruning.result()
        checked["rows pruned"] = retention.rows_removed(pruned)
        checked["snapshot partitions dropped"] = len((pruned["snapshot_partitions"] or {}).get("dropped", []))
        with transaction(engine) as conn:
            seen = [f"{kind}|{key}" for kind, key, _ in recorded]
            conn.execute(_RESOLVE_DRIFTS_NOT_SEEN, {"seen": seen})
            conn.execute(_RECORD_RUN, {
                "started_at": started, "checked": json.dumps(checked), "drifts": len(found),
                "repaired": sum(1 for _, _, repair in recorded if repair), "redriven": redriven.redriven,
                "held": redriven.held})
        summary = RunSummary(checked=checked, drifts=recorded, redriven=redriven.redriven, held=redriven.held,
                             seconds=time.monotonic() - clock)
        log.info("reconcile run done", extra={
            "clean": summary.clean, "checked": checked, "drifts": len(found), "redriven": redriven.redriven,
            "held": redriven.held, "seconds": round(summary.seconds, 2)})
        return summary

    def repair_and_record(self, engine: Engine, found: list[Drift]) -> tuple[list[tuple[str, str, str | None]], int]:
        """Repair each drift, for up to REPAIR_SECONDS, and record every one with its repair; return the
        (kind, key, repair) of each and how many repairs were deferred. A drift found after the time is
        spent is recorded unrepaired, and the next run, which finds it again, repairs it; so is one whose
        repair failed (Pub/Sub unreachable, say). A run thus always ends, and gets to its pruning, however
        many drifts it found, however long each repair takes and whether it succeeds. The kinds take turns,
        so that a thousand slow repairs of one kind do not defer every other kind's."""
        recorded, deferred = [], 0
        repair_until = time.monotonic() + REPAIR_SECONDS
        for drift in taking_turns(found):
            repair, note = None, None
            if drift.repair is not None and time.monotonic() < repair_until:
                try:
                    repair = note = drift.repair()
                except Exception as exc:  # the drift stays recorded, and the next run finds it and tries again
                    note = f"{REPAIR_FAILED}: {type(exc).__name__}"
                    log.error("reconcile repair failed; the next run tries again",
                              extra={"drift_kind": drift.kind, "drift_key": drift.key}, exc_info=True)
            elif drift.repair is not None:
                deferred += 1
                note = REPAIR_DEFERRED
            self._record(engine, drift, note, repaired=repair is not None)
            recorded.append((drift.kind, drift.key, repair))
            log.warning("reconcile drift", extra={
                "drift_kind": drift.kind, "drift_key": drift.key, "source": drift.source, "replica": drift.replica,
                "repair": note or "left for a person"})
        return recorded, deferred

    # ------------------------------------------------------------------ outboxes

    def unpublished_outboxes(self, engine: Engine, checked: dict) -> list[Drift]:
        """An outbox row still unpublished after the grace period: its function has not run since."""
        with transaction(engine) as conn:
            rows = conn.execute(_UNPUBLISHED, {"grace": self.tuning.grace_seconds}).all()
        found = []
        for row in rows:
            checked[row.outbox] = row.rows
            if row.rows:
                repair = (partial(self._publish_margin_events, engine) if row.outbox == MARGIN_EVENTS_OUTBOX
                          else partial(self._publish_outbox, engine, row.outbox.removesuffix(".outbox")))
                found.append(Drift(OUTBOX_UNPUBLISHED, row.outbox,
                                   source={"unpublished": row.rows, "oldest": row.oldest.isoformat(),
                                           "example_event_id": row.example},
                                   replica=None, repair=repair))
        return found

    def _publish_outbox(self, engine: Engine, schema: str) -> str:
        sent = self._publish_rounds(partial(outbox.publish_pending, engine, schema))
        return f"published {sent} pending rows of {schema}.outbox with their own ids"

    def _publish_margin_events(self, engine: Engine) -> str:
        sent = self._publish_rounds(partial(margin_events.publish_round, engine))
        return f"published {sent} pending rows of {MARGIN_EVENTS_OUTBOX} with their own ids"

    def _publish_rounds(self, publish_round: Callable[[str, float], int]) -> int:
        # Bounded: while the domain's own function keeps adding rows, a run must still end; the next run
        # (or the function itself) publishes the rest.
        sent = 0
        for _ in range(MAX_PUBLISH_ROUNDS):
            batch = publish_round(self.settings.project_id, self.settings.publish_timeout_seconds)
            if not batch:
                break
            sent += batch
        return sent

    # ------------------------------------------------------------------ chain -> settlement

    def chain_vs_settlement(self, engine: Engine, checked: dict) -> list[Drift]:
        """The contract's escrows at relay's checkpoint against settle's records."""
        chain_id, contract = self.chain.chain_id, self.contract
        with transaction(engine) as conn:
            block = conn.execute(sql(
                "SELECT block_number FROM relay.checkpoints WHERE chain_id = :c AND contract = :a"),
                {"c": chain_id, "a": contract.lower()}).scalar()
            if block is None:
                checked["chain escrows"] = 0
                return []
            in_flight = self._relayed_within(conn, self.tuning.grace_seconds)
            recent = self._relayed_within(conn, RECENT_SECONDS)
            settled_max = conn.execute(sql("SELECT max(escrow_id) FROM settlement.escrows WHERE chain_id = :c "
                                            "AND contract = :a"), {"c": chain_id, "a": contract}).scalar() or 0
            cursor = conn.execute(_SWEEP_CURSOR, {"c": chain_id, "a": contract}).scalar() or 1
        next_id = self.contract_view.next_escrow_id(block)
        batch = self.tuning.sweep_batch
        sweep = [int(cursor) + i for i in range(batch) if int(cursor) + i < next_id]
        unseen = range(int(settled_max) + 1, min(next_id, int(settled_max) + 1 + batch))
        ids = sorted((set(sweep) | set(unseen) | {i for i in recent if i < next_id}) - in_flight)
        on_chain = self.contract_view.escrows(ids, block)
        with transaction(engine) as conn:
            rows = conn.execute(sql(
                "SELECT escrow_id, state, depositor, amount FROM settlement.escrows WHERE chain_id = :c "
                "AND contract = :a AND escrow_id = ANY(CAST(:ids AS numeric[]))"),
                {"c": chain_id, "a": contract, "ids": ids}).mappings().all()
            following = sweep[-1] + 1 if sweep and sweep[-1] + 1 < next_id else 1
            conn.execute(_MOVE_SWEEP_CURSOR, {"c": chain_id, "a": contract, "next": following})
        settled = {int(row["escrow_id"]): row for row in rows}
        checked["chain escrows"] = len(ids)
        found = []
        for escrow_id in ids:
            chain, record = on_chain[escrow_id], settled.get(escrow_id)
            source = None if chain.state is None else {"state": chain.state, "depositor": chain.depositor,
                                                       "amount": str(chain.amount), "block": block}
            replica = None if record is None else {"state": record["state"], "depositor": record["depositor"],
                                                   "amount": str(int(record["amount"]))}
            recorded_state = None if record is None or record["state"] == "voided" else record["state"]
            if chain.state is None and recorded_state is None:
                continue
            if record is None:
                kind = SETTLEMENT_MISSING
            elif (recorded_state, record["depositor"], int(record["amount"])) != (chain.state, chain.depositor,
                                                                                  chain.amount):
                kind = SETTLEMENT_DIFFERS
            else:
                continue
            key = f"{chain_id}:{contract}:{escrow_id}"
            found.append(Drift(kind, key, source, replica,
                               repair=partial(self._replay_relayed_logs, engine, escrow_id)))
            if len(found) >= MAX_DRIFTS_PER_KIND:
                break
        return found

    def _relayed_within(self, conn, seconds: float) -> set[int]:
        """Ids of this contract's escrows with a chain log relayed in the last `seconds`."""
        ids: list[str] = conn.execute(RELAYED_WITHIN, {
            "c": self.chain.chain_id, "a": self.contract.lower(), "seconds": seconds}).scalars().all()
        return {int(escrow_id) for escrow_id in ids}

    def _replay_relayed_logs(self, engine: Engine, escrow_id: int) -> str | None:
        with transaction(engine) as conn:
            rows = conn.execute(sql(
                "SELECT topic, envelope, attributes FROM relay.outbox WHERE published_at IS NOT NULL "
                "AND envelope->'payload'->>'contract' = :a AND envelope->'payload'->>'escrow_id' = :i ORDER BY id"),
                {"a": self.contract, "i": str(escrow_id)}).mappings().all()
        if not rows:
            return self._request_backfill(engine, escrow_id)
        self._republish(rows)
        return f"replayed {len(rows)} chain logs from relay's outbox with their ids"

    def _request_backfill(self, engine: Engine, escrow_id: int) -> str:
        """relay never staged a log of the escrow (a provider left it out): ask relay to rescan from its block."""
        with transaction(engine) as conn:
            checkpoint: int = conn.execute(sql(
                "SELECT block_number FROM relay.checkpoints WHERE chain_id = :c AND contract = :a"),
                {"c": self.chain.chain_id, "a": self.contract.lower()}).scalar_one()
            after, before = conn.execute(_NEIGHBOURS_CREATED, {
                "c": self.chain.chain_id, "a": self.contract, "i": escrow_id}).one()
        # Searched between the blocks of the escrows settle holds on either side: a node that keeps only
        # recent state (anvil's last 500 blocks, a provider without archive) answered a search from block 0
        # with an error, and the repair never happened.
        low = self.chain.start_block if after is None else int(after)
        high = checkpoint if before is None else min(checkpoint, int(before))
        block = self.contract_view.creation_block(escrow_id, low, high)
        topic = load_topology().function("relay").trigger_topics[0]
        request = {"backfill": {"contract": self.contract, "from_block": block}, "source": "reconcile"}
        publish_all(self.settings.project_id, [OutgoingMessage(topic, json.dumps(request).encode(), {})],
                    self.settings.publish_timeout_seconds)
        return f"relay never relayed it: asked relay to rescan from block {block} (backfill on {topic})"

    # ------------------------------------------------------------------ settlement -> risk

    def settlement_vs_risk(self, engine: Engine, checked: dict) -> list[Drift]:
        """Every escrow settled before the grace period against risk's projection of it.

        The database compares them and returns only the escrows that differ (at most MAX_DRIFTS_PER_KIND):
        read into memory, a million consistent escrows took the run past its memory (1.6 MiB a thousand)."""
        parameters = {"grace": self.tuning.grace_seconds, "decimals": json.dumps(self.decimals),
                      "limit": MAX_DRIFTS_PER_KIND}
        with transaction(engine) as conn:
            checked["settled escrows"] = conn.execute(sql(
                "SELECT count(*) FROM settlement.escrows WHERE recorded_at < now() - make_interval(secs => :grace)"),
                parameters).scalar_one()
            rows = conn.execute(_RISK_DIFFERS_FROM_SETTLEMENT, parameters).mappings().all()
        found = []
        for row in rows:
            source = {"state": row["state"], "sequence": row["sequence"], "depositor": row["depositor"],
                      "amount": str(int(row["amount"])), "obligation_usd": str(row["obligation_usd"])}
            replica = None if row["p_state"] is None else {
                "state": row["p_state"], "sequence": row["p_sequence"], "depositor": row["p_depositor"],
                "amount": str(int(row["p_amount"])), "obligation_usd": str(row["p_obligation"])}
            key = f"{row['chain_id']}:{row['contract']}:{int(row['escrow_id'])}"
            found.append(Drift(RISK_MISSING if replica is None else RISK_DIFFERS, key, source, replica,
                               repair=partial(self._replay_latest_change, engine, row)))
        return found

    def _replay_latest_change(self, engine: Engine, escrow) -> str | None:
        with transaction(engine) as conn:
            cause = conn.execute(TRANSITION_CAUSE, {"c": escrow["chain_id"], "a": escrow["contract"],
                                                    "i": escrow["escrow_id"], "s": escrow["sequence"]}).scalar()
            rows = [] if cause is None else conn.execute(
                PUBLISHED_STATE_CHANGE, {"dedupe_key": state_change_id(cause)}).mappings().all()
        if not rows:
            return None
        self._republish(rows)
        return f"replayed settle's state change at sequence {escrow['sequence']} with its id"

    # ------------------------------------------------------------------ risk -> notify

    def risk_vs_notify(self, engine: Engine, checked: dict) -> list[Drift]:
        """Every margin event (and retraction) published by risk that notify never received."""
        window = {"window": NOTIFY_WINDOW_SECONDS, "grace": self.tuning.grace_seconds,
                  "limit": MAX_DRIFTS_PER_KIND, "topic": topics.MARGIN_EVENTS}
        with transaction(engine) as conn:
            checked["margin events"] = conn.execute(sql(
                "SELECT (SELECT count(*) FROM risk.margin_events "
                "        WHERE occurred_at > now() - make_interval(secs => :window) AND published_at IS NOT NULL) "
                "     + (SELECT count(*) FROM risk.outbox WHERE topic = :topic "
                "        AND published_at > now() - make_interval(secs => :window))"), window).scalar_one()
            changes = conn.execute(sql(
                f"SELECT {margin_events.MESSAGE_COLUMNS} FROM risk.margin_events m "
                "WHERE m.occurred_at > now() - make_interval(secs => :window) AND m.published_at IS NOT NULL "
                "AND m.published_at < now() - make_interval(secs => :grace) "
                "AND NOT EXISTS (SELECT 1 FROM notify.inbox i WHERE i.consumer = 'notify' "
                "AND i.dedupe_key = m.event_id) ORDER BY m.occurred_at LIMIT :limit"), window).all()
            retractions = conn.execute(sql(
                "SELECT o.topic, o.envelope, o.attributes, o.event_id FROM risk.outbox o "
                "WHERE o.topic = :topic AND o.published_at IS NOT NULL "
                "AND o.published_at > now() - make_interval(secs => :window) "
                "AND o.published_at < now() - make_interval(secs => :grace) "
                "AND NOT EXISTS (SELECT 1 FROM notify.inbox i WHERE i.consumer = 'notify' "
                "AND i.dedupe_key = o.dedupe_key) ORDER BY o.id LIMIT :limit"), window).mappings().all()
        found = [Drift(NOTIFY_MISSING, change.event_id,
                       source={"event_type": MARGIN_TIER_CHANGED, "escrow_id": str(change.escrow_id)},
                       replica=None, repair=partial(self._republish_margin_event, change)) for change in changes]
        return found + [Drift(NOTIFY_MISSING, row["event_id"],
                              source={"event_type": row["envelope"]["event_type"],
                                      "escrow_id": row["envelope"]["payload"]["escrow_id"]},
                              replica=None, repair=partial(self._republish_one, row)) for row in retractions]

    def _republish_margin_event(self, change) -> str:
        publish_all(self.settings.project_id, [margin_events.message(change, {REPLAY_ATTRIBUTE: REPLAY_BY_RECONCILER})],
                    self.settings.publish_timeout_seconds)
        return "republished from risk's margin events with its id"

    def _republish_one(self, row) -> str:
        self._republish([row])
        return "republished from risk's outbox with its id"

    # ------------------------------------------------------------------ shared

    def _republish(self, rows) -> None:
        messages = [OutgoingMessage(topic=row["topic"], data=outbox.wire_bytes(row["envelope"]),
                                    attributes={**row["attributes"], REPLAY_ATTRIBUTE: REPLAY_BY_RECONCILER})
                    for row in rows]
        publish_all(self.settings.project_id, messages, self.settings.publish_timeout_seconds)

    def _record(self, engine: Engine, drift: Drift, note: str | None, *, repaired: bool) -> None:
        """Upsert the drift's row: `note` says what was done about it (None: left for a person)."""
        with transaction(engine) as conn:
            conn.execute(_RECORD_DRIFT, {"kind": drift.kind, "key": drift.key, "source": json.dumps(drift.source),
                                         "replica": json.dumps(drift.replica), "repair": note, "repaired": repaired})
