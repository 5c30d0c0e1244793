"""End-to-end latency, chain event -> delivery recorded, against a floor of no-op hops.

    python -m tests.bench.latency [--escrows 200 --batch 20]

Pipeline: escrows whose health factor is already below the margin-call threshold are created on
anvil, in batches; two blocks confirm them; then one relay.tick. Each escrow's latency runs from that
tick (the moment its log became relayable) to its email delivery being recorded by notify (the
attempt's finish time): relay -> settle -> assess-margin -> notify -> local SendGrid, four push hops.

Floor, in the same run and emulator: four no-op functions chained by push subscriptions (receive,
publish the same bytes to the next topic, wait for the publish); per message, from its publish into
the first hop to its arrival on a pull subscription after the last, batches of the same size.

Both sides first send one untimed batch: the first messages through freshly started instances pay
their connections, first statements and first publishes (measured: 1.2 s against 0.8-0.95 s for the
slowest of every later batch), which is the cold-start figures' subject, not this one's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests
import sqlalchemy
from google.cloud import pubsub_v1

from shared.stack.chain_driver import create_escrow, mine, new_funded_account
from shared.stack.layout import PROJECT_ID, REPO_ROOT
from shared.stack.market_driver import Market
from shared.stack.processes import port_open, spawn, stop_group, wait_until
from shared.stack.stack import CONFIRMATIONS, Stack
from tests.bench import report
from tests.conftest import TEST_LAYOUT
from tests.support.relay import free_port

HOPS = 4
# Untimed batches sent first through each side (see the module's docstring).
WARMUP_BATCHES = 1
HOP_SOURCE = Path(__file__).with_name("hop") / "main.py"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure_pipeline(stack: Stack, escrows: int, batch: int) -> list[float]:
    engine = sqlalchemy.create_engine(stack.layout.database_url())
    publisher = pubsub_v1.PublisherClient()

    def publish(topic: str, data: bytes) -> str:
        return publisher.publish(publisher.topic_path(PROJECT_ID, topic), data).result(30)

    Market(stack, publish, engine).settle_at("2000")
    w3, contract = stack.web3(), stack.escrow()
    depositor = new_funded_account(w3, 10_000 * 10**18)
    api = f"http://127.0.0.1:{stack.layout.function_port(stack.topology, 'api')}"
    requests.post(f"{api}/users", timeout=30, json={
        "name": "Latency Bench", "date_of_birth": "1980-01-01", "country": "US",
        "email": f"bench-{uuid.uuid4().hex[:8]}@example.org", "phone": "+14155550100",
        "wallet_addresses": [depositor], "notification_channels": ["email"],
        "identity_document": {"type": "passport", "number": "LB1234567", "issuing_country": "US",
                              "expires_on": "2031-01-31"}}).raise_for_status()
    time.sleep(2)  # notify learns the contact
    latencies: list[float] = []
    for batch_number in range(WARMUP_BATCHES + escrows // batch):
        # 1 ETH against 1500 USD at 2000 USD/ETH: health factor 1.1, a margin call as soon as assessed.
        ids = [create_escrow(w3, contract, depositor, w3.eth.accounts[2], 10**18, 1500 * 10**8).escrow_id
               for _ in range(batch)]
        mine(w3, CONFIRMATIONS)
        ticked = datetime.now(UTC)
        publish("relay.tick", b'{"source": "latency bench"}')

        def recorded(ids=ids):
            with engine.connect() as conn:
                rows = conn.execute(sqlalchemy.text(
                    "SELECT max(a.finished_at) AS at FROM notify.delivery_attempts a "
                    "JOIN notify.deliveries d ON d.id = a.delivery_id "
                    "JOIN risk.margin_events m ON m.event_id = d.event_id "
                    "WHERE m.contract = :c AND m.escrow_id = ANY(:ids) AND a.outcome = 'sent' GROUP BY m.escrow_id"),
                    {"c": contract.address, "ids": ids}).all()
            return rows if len(rows) == len(ids) else None

        # Like Cloud Scheduler, tick again while waiting: a tick that finds the scan lock taken is skipped.
        deadline = time.monotonic() + 120
        next_tick = time.monotonic() + 5
        while not (rows := recorded()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"deliveries of escrows {ids} not all recorded after 120 s: "
                                   f"{_where_they_are(engine, contract.address, ids)}")
            if time.monotonic() > next_tick:
                publish("relay.tick", b'{"source": "latency bench"}')
                next_tick += 5
            time.sleep(0.1)
        if batch_number >= WARMUP_BATCHES:
            latencies.extend((row.at - ticked).total_seconds() for row in rows)
    engine.dispose()
    return latencies


def _where_they_are(engine, contract: str, ids: list[int]) -> dict:
    """How many of the escrows each stage has, to say where a batch stopped."""
    stages = {"settled": "SELECT count(*) FROM settlement.escrows WHERE contract = :c AND escrow_id = ANY(:ids)",
              "projected": "SELECT count(*) FROM risk.positions WHERE contract = :c AND escrow_id = ANY(:ids)",
              "margin events": "SELECT count(*) FROM risk.margin_events WHERE contract = :c AND escrow_id = ANY(:ids)",
              "deliveries": "SELECT count(*) FROM notify.deliveries d JOIN risk.margin_events m "
                            "ON m.event_id = d.event_id WHERE m.contract = :c AND m.escrow_id = ANY(:ids)"}
    with engine.connect() as conn:
        return {name: conn.execute(sqlalchemy.text(sql), {"c": contract, "ids": ids}).scalar()
                for name, sql in stages.items()}


def measure_floor(stack: Stack, messages: int, batch: int) -> list[float]:
    run = uuid.uuid4().hex[:8]
    topics = [f"bench-hop-{run}-{i}" for i in range(HOPS + 1)]
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    for topic in topics:
        publisher.create_topic(name=publisher.topic_path(PROJECT_ID, topic))
    pids = []
    try:
        for i in range(HOPS):
            port = free_port()
            env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "GCP_PROJECT": PROJECT_ID,
                   "NEXT_TOPIC": topics[i + 1], "PUBSUB_EMULATOR_HOST": stack.layout.pubsub_host, "THREADS": "4"}
            log = stack.layout.logs / f"bench-hop-{i}.log"
            pid = spawn([str(Path(sys.executable).with_name("functions-framework")), "--target=hop",
                         f"--source={HOP_SOURCE}", "--host=127.0.0.1", f"--port={port}"], log, env=env, cwd=REPO_ROOT)
            pids.append(pid)
            wait_until(lambda port=port: port_open(port), f"hop {i}", 60, log, pid)
            subscriber.create_subscription(request={
                "name": subscriber.subscription_path(PROJECT_ID, f"{topics[i]}-push"),
                "topic": publisher.topic_path(PROJECT_ID, topics[i]), "push_config": {
                    "push_endpoint": f"http://127.0.0.1:{port}/"}, "ack_deadline_seconds": 30})
        sink = subscriber.subscription_path(PROJECT_ID, f"{topics[-1]}-sink")
        subscriber.create_subscription(name=sink, topic=publisher.topic_path(PROJECT_ID, topics[-1]))
        latencies: list[float] = []
        for batch_number in range(WARMUP_BATCHES + messages // batch):
            sent = {}
            for _ in range(batch):
                key = uuid.uuid4().hex
                sent[key] = time.time()
                publisher.publish(publisher.topic_path(PROJECT_ID, topics[0]), b"{}", key=key)
            while sent:
                reply = subscriber.pull(request={"subscription": sink, "max_messages": 100}, timeout=30)
                now = time.time()
                for received in reply.received_messages:
                    started = sent.pop(received.message.attributes["key"], None)
                    if started is not None and batch_number >= WARMUP_BATCHES:
                        latencies.append(now - started)
                if reply.received_messages:
                    subscriber.acknowledge(request={"subscription": sink,
                                                    "ack_ids": [m.ack_id for m in reply.received_messages]})
        return latencies
    finally:
        for pid in pids:
            stop_group(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--escrows", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()
    os.environ["PUBSUB_EMULATOR_HOST"] = TEST_LAYOUT.pubsub_host
    stack = Stack(TEST_LAYOUT)
    stack.up()
    try:
        pipeline = measure_pipeline(stack, args.escrows, args.batch)
        floor = measure_floor(stack, args.escrows, args.batch)
    finally:
        stack.down()
    print(f"end-to-end latency over {len(pipeline)} escrows in batches of {args.batch} ({HOPS} push hops), "
          f"after {WARMUP_BATCHES} untimed batch on each side")
    print(f"{'measure':40} {'p50 s':>7} {'p99 s':>7}")
    p50, p99 = percentile(pipeline, 0.5), percentile(pipeline, 0.99)
    f50, f99 = percentile(floor, 0.5), percentile(floor, 0.99)
    print(f"{'chain event -> delivery recorded':40} {p50:7.2f} {p99:7.2f}")
    print(f"{'floor: no-op hops, same emulator':40} {f50:7.2f} {f99:7.2f}")
    print(f"{'ratio':40} {p50 / f50:7.2f} {p99 / f99:7.2f}")
    report.record("chain event -> delivery p50 (vs no-op hops)", p50, "s", f50)
    report.record("chain event -> delivery p99 (vs no-op hops)", p99, "s", f99, target="<= 1.5")
    print(f"(mean {statistics.mean(pipeline):.2f} s vs {statistics.mean(floor):.2f} s)")


if __name__ == "__main__":
    main()
