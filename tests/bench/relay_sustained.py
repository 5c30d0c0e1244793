"""relay under a steady stream of logs, tick after tick at the deployed tick interval: does the lag stay bounded?

    make bench                                   (5 ticks a minute apart, 100 escrow logs a second)
    python -m tests.bench.relay_sustained --ticks 10 --interval 60 --rate 200

A producer thread mines one block a second holding `rate` EscrowCreated logs (a chain busier than
Ethereum's one block in 12 s) while `Relay.run_tick` runs once per interval, as Cloud Scheduler drives it.
After each tick: what it staged and published, the blocks it still lags the confirmed target, and the
outbox rows left unpublished. The figure is the relayed rate against the produced rate (the baseline):
1.0 keeps up; the lag after the last tick says whether the backlog grew.
"""

from __future__ import annotations

import argparse
import threading
import time

import sqlalchemy

from shared.chain.client import deploy_contract
from shared.messaging import outbox
from shared.relay import SCHEMA as RELAY_SCHEMA
from shared.relay.service import Relay
from shared.relay.settings import DEFAULT_RELAY_TIME_BUDGET_SECONDS, ChainSettings
from shared.settings import DatabaseSettings, Settings
from shared.stack.layout import CHAIN_ID, DATABASE, PROJECT_ID
from shared.stack.stack import CONFIRMATIONS, Stack
from tests.bench import report
from tests.bench.throughput import _rpc_batch
from tests.conftest import TEST_LAYOUT
from tests.support.database import OnSqlAlchemy


class Producer(threading.Thread):
    """Mines a block with `rate` escrow creations every second until stopped."""

    def __init__(self, stack: Stack, address: str, rate: int) -> None:
        super().__init__(daemon=True)
        w3 = stack.web3()
        contract = w3.eth.contract(address=address, abi=stack.escrow().abi)
        deadline = w3.eth.get_block("latest")["timestamp"] + 365 * 86400
        data = contract.functions.create(w3.eth.accounts[9], 10**10, deadline)._encode_transaction_data()
        accounts = w3.eth.accounts[1:6]
        self.calls = [("eth_sendTransaction", [{"from": accounts[i % len(accounts)], "to": address, "data": data,
                                                "value": hex(10**12), "gas": hex(200_000)}]) for i in range(rate)]
        self.url = stack.layout.rpc_url
        self.produced = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        next_block = time.monotonic()
        while not self.stopping.is_set():
            _rpc_batch(self.url, self.calls + [("evm_mine", [])])
            self.produced += len(self.calls)
            next_block += 1.0
            self.stopping.wait(max(0.0, next_block - time.monotonic()))


def main() -> None:
    """Produce, tick, print each tick and the sustained rate against the produced rate."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between ticks (Scheduler: 60)")
    parser.add_argument("--rate", type=int, default=100, help="escrow logs the chain produces per second")
    args = parser.parse_args()
    stack = Stack(TEST_LAYOUT)
    stack.up()
    rows = []
    try:
        stack.admin.delete_subscription("settlement.events.v1.settle")  # nothing competes with relay
        w3 = stack.web3()
        address = deploy_contract(w3, "Escrow", w3.eth.accounts[0])
        _rpc_batch(stack.layout.rpc_url, [("evm_setAutomine", [False])])
        database = DatabaseSettings(name=DATABASE, user="fn_relay", host="127.0.0.1",
                                    port=stack.layout.postgres_port, instance_connection_name=None)
        chain = ChainSettings(rpc_url=stack.layout.rpc_url, chain_id=CHAIN_ID, escrow_address=address,
                              confirmations=CONFIRMATIONS, start_block=w3.eth.block_number + 1, block_range=2000,
                              time_budget_seconds=DEFAULT_RELAY_TIME_BUDGET_SECONDS)
        relay = Relay(Settings(service="relay-sustained", project_id=PROJECT_ID, database=database,
                               publish_timeout_seconds=60, parts={ChainSettings: chain}))
        owner = sqlalchemy.create_engine(stack.layout.database_url())
        producer = Producer(stack, address, args.rate)
        started = time.monotonic()
        producer.start()
        relayed = 0
        try:
            for tick in range(args.ticks):
                time.sleep(max(0.0, started + (tick + 1) * args.interval - time.monotonic()))
                tick_started = time.monotonic()
                result = relay.run_tick()
                relayed += result.published
                with owner.connect() as connection:
                    conn = OnSqlAlchemy(connection)
                    unpublished = outbox.count_unpublished(conn, RELAY_SCHEMA)
                rows.append((tick + 1, result.logs, result.published, time.monotonic() - tick_started,
                             result.lag_blocks, unpublished, producer.produced))
        finally:
            producer.stopping.set()
            producer.join()
            _rpc_batch(stack.layout.rpc_url, [("evm_setAutomine", [True])])
        elapsed = time.monotonic() - started
        owner.dispose()
    finally:
        stack.down()
    print(f"relay, sustained: {args.rate} escrow logs a second (a block a second), a tick every {args.interval:.0f} s")
    print(f"{'tick':>4} {'staged':>8} {'published':>10} {'tick s':>7} {'lag blocks':>11} {'unpublished':>12} "
          f"{'produced so far':>16}")
    for tick, staged, published, seconds, lag, unpublished, produced in rows:
        print(f"{tick:4d} {staged:8d} {published:10d} {seconds:7.1f} {lag:11d} {unpublished:12d} {produced:16d}")
    produced_rate = args.rate  # the producer's schedule; its count above shows it kept it
    relayed_rate = relayed / elapsed
    print(f"relayed {relayed} logs in {elapsed:.0f} s: {relayed_rate:.0f} logs/s against {produced_rate} produced "
          f"(ratio {relayed_rate / produced_rate:.2f}; the last tick's lag is the confirmations plus the blocks of "
          "the seconds since it read the head)")
    report.record("relay sustained, tick a minute (vs chain's log rate)", relayed_rate, "logs/s", produced_rate,
                  better="higher", target="lag bounded")
    report.record("relay sustained: lag after the last tick", rows[-1][4], "blocks")


if __name__ == "__main__":
    main()
