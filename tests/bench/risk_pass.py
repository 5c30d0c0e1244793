"""assess-margin's set-based pass: 100k open positions on one asset, one price update.

    make bench
    python -m tests.bench.risk_pass --positions 100000 --rounds 3

Measured: the handler of one PriceUpdated, in its transaction, as fn_assess_margin: store the price,
recompute every open position (health factor, tier with hysteresis), and for the tier changes write
the position's tier and the margin event (its own outbox row, and the change's only record): history
on change, see shared/risk/assessment.py. (Portfolios are valued when read; see shared/risk/portfolio.py.) Two
scenarios: a routine 1% move and a 15% crash.
Baseline, in the same run and database: one hand-written INSERT … SELECT computing a snapshot of every
position (health factor and tier) and nothing else: what a pass wrote before snapshots were on change.
Each round first resets the positions to the same starting price (untimed), then times the baseline
and the handler at the new price.

Alerts of a crash: then one more crash is applied as assess-margin applies a delivery, handler and
after-commit publisher (one drain, until the delivery's work must end: its handler's start plus what
assess-margin's timeout leaves after a database outage wait and a margin, shared/messaging/consumer.py),
and timed until its last margin event is confirmed by Pub/Sub; a pull subscription on the topic notify
reads checks that every event arrived.
Baseline: publishing the same messages from memory (`publish_all`, in the drain's round size).

Storage: the bytes a pass writes per tier change, and the steady state under the retention settings.
Pruning: every margin event the bench wrote is aged past MARGIN_EVENT_RETENTION_DAYS and deleted by one
reconcile run's retention (its rounds, as fn_reconcile); the rate says whether the reconciler's runs keep
up with a day's tier changes (each run prunes for at most PRUNE_ROUNDS_SECONDS).
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from datetime import UTC, datetime

import sqlalchemy
from google.cloud import pubsub_v1

from shared import topics
from shared.db import get_engine, transaction
from shared.envelope import Envelope, utc_iso
from shared.events import PRICE_UPDATED
from shared.messaging.consumer import drain_until, work_seconds
from shared.pubsub import publish_all
from shared.reconcile import retention
from shared.reconcile.retention import PRUNE_ROUNDS_SECONDS
from shared.reconcile.settings import (
    DEFAULT_MARGIN_EVENT_RETENTION_DAYS,
    DEFAULT_PRUNE_MAX_ROWS,
    DEFAULT_RECONCILE_GRACE_SECONDS,
    DEFAULT_RECONCILE_SWEEP_BATCH,
    DEFAULT_REDRIVE_MAX,
    DEFAULT_SNAPSHOT_RETENTION_DAYS,
    ReconcileSettings,
)
from shared.risk import margin_events
from shared.risk.service import RiskEngine
from shared.risk.settings import RiskSettings
from shared.settings import Settings
from shared.stack.layout import DATABASE, PROJECT_ID
from shared.stack.stack import RECONCILE_TICK_TOPIC, Stack
from shared.topology import Topology
from tests.bench import report
from tests.conftest import TEST_LAYOUT
from tests.support.database import engine_as

CONTRACT = "0x000000000000000000000000000000000000bEEF"
START_PRICE = "2000"
# A routine move (a few positions cross a threshold) and a crash (a third of them do).
SCENARIOS = (("routine move, 2000 -> 1980 (-1%)", "1980"), ("crash, 2000 -> 1700 (-15%)", "1700"))

_SEED = """
INSERT INTO risk.positions (chain_id, contract, escrow_id, depositor, asset_token, asset_symbol,
    collateral_amount, obligation_usd, liquidation_threshold, state, is_open, sequence, correlation_id)
SELECT 31337, :contract, i, '0x' || lpad(to_hex(mod(i, :depositors)), 40, '0'), '0x' || repeat('0', 40), 'ETH',
       c.amount, round(c.amount * 2000 * 0.825 / (1.0 + mod(i, 150) / 100.0), 8), 0.825, 'created', true, 1,
       'bench:' || i
FROM generate_series(1, :n) AS i, LATERAL (SELECT 1 + mod(i, 10) / 10.0 AS amount) c
"""

_BASELINE = """
INSERT INTO risk.margin_health_snapshots
    (chain_id, contract, escrow_id, depositor, asset_symbol, collateral_amount, obligation_usd, price,
     collateral_value_usd, health_factor, previous_tier, tier, price_event_id, correlation_id,
     cause_event_id, taken_at)
SELECT p.chain_id, p.contract, p.escrow_id, p.depositor, p.asset_symbol, p.collateral_amount, p.obligation_usd,
       ap.price, p.collateral_amount * ap.price, s.hf, p.tier,
       CASE WHEN s.hf < 1.0 THEN 'LIQUIDATION' WHEN s.hf < 1.2 THEN 'MARGIN_CALL'
            WHEN s.hf < 1.5 THEN 'WARNING' ELSE 'HEALTHY' END,
       ap.price_event_id, p.correlation_id, 'baseline', now()
FROM risk.positions p JOIN risk.asset_prices ap ON ap.asset_symbol = p.asset_symbol,
     LATERAL (SELECT CASE WHEN p.obligation_usd = 0 THEN 'Infinity'::numeric
                     ELSE round(p.collateral_amount * ap.price * p.liquidation_threshold / p.obligation_usd, 8)
                     END AS hf) s
WHERE p.is_open AND p.asset_symbol = 'ETH'
"""


class PriceFeed:
    """PriceUpdated events with rising sequence numbers, as fetch-price would publish them."""

    def __init__(self, start_sequence: int) -> None:
        self.sequence = start_sequence

    def next(self, price: str) -> Envelope:
        self.sequence += 1
        now = utc_iso(datetime.now(UTC))
        event_id = f"{PRICE_UPDATED}:ETH:bench-{self.sequence}"
        return Envelope(event_id=event_id, event_type=PRICE_UPDATED, schema_version=1, occurred_at=now,
                        correlation_id=event_id, causation_id=None, payload={
                            "asset": "ETH", "token": "0x" + "00" * 20, "price": price, "sequence": self.sequence,
                            "observed_at": now, "reason": "bench",
                            "sources": [{"source": "chainlink", "price": price, "round_id": "1",
                                         "updated_at": now, "age_seconds": 1.0}]})


_GROWTH = sqlalchemy.text(
    "SELECT coalesce((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
    "                 WHERE inhparent = 'risk.margin_health_snapshots'::regclass), 0) AS snapshots, "
    "       pg_total_relation_size('risk.margin_events') AS margin_events")


def bytes_of_a_pass(owner, engine, risk: RiskEngine, feed: PriceFeed, price: str) -> tuple[int, int, int]:
    """(snapshot bytes, margin event bytes, tier changes) one pass to `price` adds, tables and indexes."""
    with owner.connect() as conn:
        before = conn.execute(_GROWTH).one()
        changes_before = conn.execute(sqlalchemy.text("SELECT count(*) FROM risk.margin_events")).scalar()
    with transaction(engine) as conn:
        risk.handle(conn, feed.next(price))
    with owner.connect() as conn:
        after = conn.execute(_GROWTH).one()
        changes = conn.execute(sqlalchemy.text("SELECT count(*) FROM risk.margin_events")).scalar() - changes_before
    return int(after.snapshots - before.snapshots), int(after.margin_events - before.margin_events), changes


def measure(owner, engine, risk: RiskEngine, feed: PriceFeed, price: str, rounds: int) -> tuple:
    """Median handler and baseline seconds for a move from START_PRICE to `price`, and tier changes."""
    handler_times, baseline_times, changes = [], [], []
    for round_number in range(rounds):
        with transaction(engine) as conn:
            risk.handle(conn, feed.next(START_PRICE))  # untimed reset: every position back at the start
        update = feed.next(price)

        def baseline():
            with owner.begin() as conn:  # the baseline reads the price the handler will store
                conn.execute(sqlalchemy.text("UPDATE risk.asset_prices SET price = :p WHERE asset_symbol = 'ETH'"),
                             {"p": price})
            started = time.perf_counter()
            with owner.begin() as conn:
                conn.execute(sqlalchemy.text(_BASELINE))
            baseline_times.append(time.perf_counter() - started)
            with owner.begin() as conn:  # back to the start, so the handler sees a real update
                conn.execute(sqlalchemy.text("UPDATE risk.asset_prices SET price = :p WHERE asset_symbol = 'ETH'"),
                             {"p": START_PRICE})

        def handler(update=update):
            with owner.begin() as conn:
                before = conn.execute(sqlalchemy.text("SELECT count(*) FROM risk.margin_events")).scalar()
            started = time.perf_counter()
            with transaction(engine) as conn:
                risk.handle(conn, update)
            handler_times.append(time.perf_counter() - started)
            with owner.begin() as conn:
                changes.append(conn.execute(sqlalchemy.text("SELECT count(*) FROM risk.margin_events")).scalar()
                               - before)

        # Alternate the order: the snapshot table grows with every run.
        for step in ((baseline, handler) if round_number % 2 == 0 else (handler, baseline)):
            step()
    return statistics.median(handler_times), statistics.median(baseline_times), max(changes)


# A bench-only pull subscription on the margin events' topic, read to check that a crash's alerts arrived.
ARRIVALS = f"{topics.MARGIN_EVENTS}.bench"


def _arrived(event_ids: set[str], patience: float = 30.0) -> int:
    """How many of `event_ids` the bench subscription receives (it stops after `patience` s of silence)."""
    subscriber = pubsub_v1.SubscriberClient()
    subscription = subscriber.subscription_path(PROJECT_ID, ARRIVALS)
    seen: set[str] = set()
    quiet_since = time.monotonic()
    while seen < event_ids and time.monotonic() - quiet_since < patience:
        reply = subscriber.pull(request={"subscription": subscription, "max_messages": 1000}, timeout=30)
        if reply.received_messages:
            quiet_since = time.monotonic()
            seen.update(m.message.attributes["event_id"] for m in reply.received_messages)
            subscriber.acknowledge(request={"subscription": subscription,
                                            "ack_ids": [m.ack_id for m in reply.received_messages]})
    subscriber.close()
    return len(seen & event_ids)


def alerts_of_a_crash(stack: Stack, owner, engine, risk: RiskEngine, feed: PriceFeed, price: str) -> tuple:
    """(seconds from the crash's price update to its last margin event published, seconds to publish the
    same messages from memory, margin events of the crash, left unpublished, arrived on the topic)."""
    with owner.begin() as conn:  # the earlier rounds' events were never published: not this crash's work
        conn.execute(sqlalchemy.text("UPDATE risk.margin_events SET published_at = now() WHERE published_at IS NULL"))
    stack.admin.create_subscription(ARRIVALS, {"topic": stack.admin.topic_name(topics.MARGIN_EVENTS),
                                               "ackDeadlineSeconds": 60})
    update = feed.next(price)
    started = time.perf_counter()
    work_until = time.monotonic() + work_seconds(stack.topology.function("assess-margin").timeout_seconds)
    with transaction(engine) as conn:
        risk.handle(conn, update)
    margin_events.publish_after_commit(PROJECT_ID, timeout=60)(engine, update, drain_until(work_until))
    seconds = time.perf_counter() - started
    with owner.connect() as conn:
        rows = conn.execute(sqlalchemy.text(
            f"SELECT {margin_events.MESSAGE_COLUMNS}, m.published_at FROM risk.margin_events m "
            "WHERE m.cause_event_id = :cause ORDER BY m.occurred_at"), {"cause": update.event_id}).all()
    left = sum(1 for row in rows if row.published_at is None)
    arrived = _arrived({row.event_id for row in rows})
    # The baseline publishes while the subscription is there too (the emulator does less for a topic
    # nobody subscribes to); its copies are dropped with the subscription.
    messages = [margin_events.message(row) for row in rows]
    started = time.perf_counter()
    for first in range(0, len(messages), margin_events.PUBLISH_ROUND):
        publish_all(PROJECT_ID, messages[first:first + margin_events.PUBLISH_ROUND], 60)
    from_memory = time.perf_counter() - started
    stack.admin.delete_subscription(ARRIVALS)
    return seconds, from_memory, len(rows), left, arrived


def margin_event_pruning(owner, layout) -> tuple[int, float]:
    """(margin events, seconds): one reconcile run's retention (`retention.prune`, as fn_reconcile, its
    rounds included) deleting the margin events the bench wrote, once they are all older than the retention."""
    with owner.begin() as conn:
        conn.execute(sqlalchemy.text(
            "UPDATE risk.margin_events SET occurred_at = occurred_at - make_interval(days => :days), "
            "published_at = coalesce(published_at, now()) WHERE contract = :contract"),
            {"days": DEFAULT_MARGIN_EVENT_RETENTION_DAYS + 1, "contract": CONTRACT})
    with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sqlalchemy.text("VACUUM ANALYZE risk.margin_events"))
    with engine_as(layout, "fn_reconcile") as reconciler:
        started = time.perf_counter()
        done = retention.prune(reconciler, ReconcileSettings(
            grace_seconds=DEFAULT_RECONCILE_GRACE_SECONDS, redrive_max=DEFAULT_REDRIVE_MAX,
            sweep_batch=DEFAULT_RECONCILE_SWEEP_BATCH))
        seconds = time.perf_counter() - started
    return done["margin_events"]["risk.margin_events"], seconds


def _reconcile_runs_a_day(topology: Topology) -> int:
    """Reconcile runs a day, from its Cloud Scheduler job ("*/N * * * *": every N minutes)."""
    [job] = [job for job in topology.scheduler_jobs if job.topic == RECONCILE_TICK_TOPIC]
    every = re.fullmatch(r"\*/(\d+) \* \* \* \*", job.schedule)
    if every is None:
        raise ValueError(f"the reconcile job's schedule {job.schedule!r} is not every N minutes")
    return 1440 // int(every.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    stack = Stack(TEST_LAYOUT)
    stack.up()
    try:
        # The stack's assess-margin must not apply prices while we measure, nor notify read the alerts.
        stack.admin.delete_subscription("market.prices.v1.assess-margin")
        stack.admin.delete_subscription(f"{topics.MARGIN_EVENTS}.notify")
        owner = sqlalchemy.create_engine(stack.layout.database_url())
        with owner.begin() as conn:
            conn.execute(sqlalchemy.text(_SEED), {"contract": CONTRACT, "n": args.positions,
                                                  "depositors": args.positions // 10})
            start_sequence = conn.execute(sqlalchemy.text(
                "SELECT coalesce(max(sequence), 0) FROM risk.asset_prices")).scalar()
        with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sqlalchemy.text("ANALYZE risk.positions"))
        settings = Settings.from_env({
            "SERVICE_NAME": "assess-margin-bench", "GCP_PROJECT": "bench", "DB_NAME": DATABASE,
            "DB_USER": "fn_assess_margin", "DB_HOST": "127.0.0.1", "DB_PORT": str(stack.layout.postgres_port),
            "PRICE_ASSETS": stack.price_assets()}, parts=[RiskSettings])
        engine = get_engine(settings.database)
        risk = RiskEngine(settings.part(RiskSettings))
        feed = PriceFeed(start_sequence)
        results = [(label, *measure(owner, engine, risk, feed, price, args.rounds))
                   for label, price in SCENARIOS]
        # From the last crash back to the start: a crash's worth of tier changes.
        snapshot_bytes, event_bytes, changed = bytes_of_a_pass(owner, engine, risk, feed, START_PRICE)
        alerts = alerts_of_a_crash(stack, owner, engine, risk, feed, SCENARIOS[1][1])
        pruned, prune_seconds = margin_event_pruning(owner, stack.layout)
    finally:
        stack.down()
    print(f"risk pass over {args.positions} open positions on one asset, median of {args.rounds} rounds")
    print(f"{'price update -> tiers + margin events':44} {'seconds':>8} {'baseline':>9} {'ratio':>6} "
          f"{'tier changes':>13}")
    for label, handler, baseline, changes in results:
        print(f"{label:44} {handler:8.2f} {baseline:9.2f} {handler / baseline:6.2f} {changes:13d}")
        report.record(f"assess-margin {args.positions:,}: {label.split(',')[0]} (vs INSERT...SELECT)", handler, "s",
                      baseline, target="<= 1.5")
    print("(baseline: one INSERT ... SELECT of a snapshot of every position, nothing else; ratio = handler / baseline)")
    seconds, from_memory, events, left, arrived = alerts
    print(f"a crash's alerts: {events} margin events published {seconds:.1f} s after the price update, in one "
          f"delivery (handler, then a drain until the delivery's work ends); {left} left unpublished; {arrived} "
          f"arrived on {topics.MARGIN_EVENTS}; the same messages published from memory: {from_memory:.1f} s")
    report.record(f"assess-margin {args.positions:,}: crash alerts all out (vs from memory)",
                  seconds, "s", from_memory, target="<= 60 s, all of them")
    report.record(f"assess-margin {args.positions:,}: crash alerts missing on the topic",
                  events - arrived, "events", target="0")
    snapshot_per_change, event_per_change = snapshot_bytes / changed, event_bytes / changed
    print(f"history on change: a price pass records each tier change once, by its margin event; measured over "
          f"{changed} changes: {snapshot_per_change:.0f} B of snapshot and {event_per_change:.0f} B of margin "
          "event each (indexes included)")
    routine_changes = results[0][3] / args.positions
    runs_a_day = _reconcile_runs_a_day(stack.topology)
    prune_rate = pruned / prune_seconds
    # What the reconciler's runs can delete in a day: its rounds stop after PRUNE_ROUNDS_SECONDS a run.
    prunable_a_day = prune_rate * PRUNE_ROUNDS_SECONDS * runs_a_day
    print(f"pruning: one reconcile run's retention deleted {pruned:,} of the bench's margin events in "
          f"{prune_seconds:.1f} s, its other routines included ({prune_rate:,.0f} a second; rounds of "
          f"{DEFAULT_PRUNE_MAX_ROWS:,}); in {PRUNE_ROUNDS_SECONDS:.0f} s "
          f"a run and {runs_a_day} runs a day that is {prunable_a_day:,.0f} a day")
    report.record("margin events the reconciler prunes a second", prune_rate, "events/s")
    print(f"if every pass were the routine move ({routine_changes:.1%} of positions change tier), at steady state: "
          f"snapshots kept {DEFAULT_SNAPSHOT_RETENTION_DAYS} days (SNAPSHOT_RETENTION_DAYS, dropped by day), "
          f"margin events kept {DEFAULT_MARGIN_EVENT_RETENTION_DAYS} days (MARGIN_EVENT_RETENTION_DAYS):")
    for positions in (100_000, 1_000_000):
        changes_a_pass = routine_changes * positions
        for label, passes_a_day in (("a pass a minute", 1440), ("a pass an hour", 24)):
            snapshots = snapshot_per_change * changes_a_pass * passes_a_day * DEFAULT_SNAPSHOT_RETENTION_DAYS
            events = event_per_change * changes_a_pass * passes_a_day * DEFAULT_MARGIN_EVENT_RETENTION_DAYS
            pruning_needed = changes_a_pass * passes_a_day / prunable_a_day
            print(f"  {positions:>9,} positions, {label:16} "
                  f"{(snapshot_per_change + event_per_change) * changes_a_pass / 2**20:8.1f} MiB/pass "
                  f"{snapshots / 2**30:8.1f} GiB of snapshots {events / 2**30:8.1f} GiB of margin events; "
                  f"pruning them takes {pruning_needed:.1%} of the runs' pruning time")
            report.record(f"snapshot storage kept, {positions:,} positions, {label}", snapshots / 2**30, "GiB")
            report.record(f"margin event storage kept, {positions:,} positions, {label}", events / 2**30, "GiB")
            report.record(f"margin event pruning time used, {positions:,} positions, {label}",
                          pruning_needed * 100, "%", target="<= 100")
    report.record("snapshot bytes written per tier change", snapshot_per_change, "B")
    report.record("margin event bytes written per tier change", event_per_change, "B")

if __name__ == "__main__":
    main()
