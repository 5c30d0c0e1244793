"""One reconcile pass over 100k escrows: the chain read and the comparisons, each against a plain baseline.

    make bench
    python -m tests.bench.reconcile --escrows 1000000

Seeded (untimed): 100k escrows in settlement and the same 100k in risk's projection, consistent, on a
bench contract key. Measured, as fn_reconcile, with the reconciler's own code:
- reading the escrows from the contract with batched `eth_call` (`deals(id)`, 500 per request), against
  the naive baseline of one web3 `call()` per escrow (timed over 1,000 and scaled: the same anvil);
- comparing settlement with risk for all of them, against one plain SELECT of the same join read into
  the process; and the memory the comparison's Python allocations peak at (tracemalloc, a second run),
  against the reconcile function's memory in the topology (the comparison read every escrow into the
  run until it went to the database: 1.7 GiB at 1M escrows).
A fresh contract holds no escrows, so each `deals(id)` answers an empty record: the same work per call.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import sqlalchemy

from shared.chain.client import deploy_contract, escrow_contract
from shared.db import get_engine
from shared.reconcile.service import Reconciler
from shared.reconcile.settings import ReconcileSettings
from shared.relay.settings import ChainSettings
from shared.risk.settings import RiskSettings
from shared.settings import Settings
from shared.stack.stack import Stack
from tests.bench import report
from tests.conftest import TEST_LAYOUT

CONTRACT = "0x000000000000000000000000000000000000cAfE"
NAIVE_SAMPLE = 1000

_SEED = """
INSERT INTO settlement.escrows (chain_id, contract, escrow_id, depositor, beneficiary, asset, amount, obligation_usd,
    deadline, state, sequence, last_block, last_log_index, created_event_id, created_block, created_tx,
    created_at, updated_at, recorded_at)
SELECT 31337, :contract, i, '0x' || lpad(to_hex(i), 40, '0'), '0x' || repeat('1', 40), '0x' || repeat('0', 40),
       1000000000000000000, 1000, now() + interval '30 days', 'created', 1, i, 0, 'bench:' || i, i, 'bench',
       now(), now(), now() - interval '1 hour'
FROM generate_series(1, :n) AS i;
INSERT INTO risk.positions (chain_id, contract, escrow_id, depositor, asset_token, asset_symbol, collateral_amount,
    obligation_usd, liquidation_threshold, state, is_open, sequence, correlation_id)
SELECT 31337, :contract, i, '0x' || lpad(to_hex(i), 40, '0'), '0x' || repeat('0', 40), 'ETH', 1, 1000, 0.825,
       'created', true, 1, 'bench:' || i
FROM generate_series(1, :n) AS i
"""

_BASELINE = """
SELECT e.escrow_id, e.state, e.sequence, e.depositor, e.amount, e.obligation_usd,
       p.state, p.sequence, p.depositor, p.collateral_amount, p.obligation_usd
FROM settlement.escrows e LEFT JOIN risk.positions p USING (chain_id, contract, escrow_id)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--escrows", type=int, default=100_000)
    args = parser.parse_args()
    stack = Stack(TEST_LAYOUT)
    stack.up()
    try:
        owner = sqlalchemy.create_engine(stack.layout.database_url())
        with owner.begin() as conn:
            for statement in _SEED.split(";"):
                conn.execute(sqlalchemy.text(statement), {"contract": CONTRACT, "n": args.escrows})
        w3 = stack.web3()
        address = deploy_contract(w3, "Escrow", w3.eth.accounts[0])
        function = stack.topology.function("reconcile")
        env = stack.function_env(function, address)
        settings = Settings.from_env(env, parts=[ChainSettings, RiskSettings, ReconcileSettings])
        reconciler = Reconciler(settings)
        engine = get_engine(settings.database)
        block = w3.eth.block_number
        ids = list(range(1, args.escrows + 1))

        started = time.perf_counter()
        read = reconciler.contract_view.escrows(ids, block)
        batched = time.perf_counter() - started
        contract = escrow_contract(w3, address)
        started = time.perf_counter()
        for escrow_id in ids[:NAIVE_SAMPLE]:
            contract.functions.deals(escrow_id).call(block_identifier=block)
        naive = (time.perf_counter() - started) * len(ids) / NAIVE_SAMPLE

        checked: dict = {}
        started = time.perf_counter()
        drifts = reconciler.settlement_vs_risk(engine, checked)
        compare = time.perf_counter() - started
        tracemalloc.start()
        reconciler.settlement_vs_risk(engine, {})
        peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        memory_mib = _mebibytes(function.memory)
        started = time.perf_counter()
        with owner.connect() as conn:
            conn.execute(sqlalchemy.text(_BASELINE)).all()
        plain = time.perf_counter() - started
        ours = [d for d in drifts if CONTRACT in d.key]
    finally:
        stack.down()
    assert len(read) == len(ids) and not ours, "the seeded escrows must read back consistent"
    print(f"reconcile over {args.escrows} escrows ({checked['settled escrows']} settled in the database)")
    print(f"{'step':46} {'seconds':>8} {'baseline':>9} {'ratio':>6}")
    print(f"{'chain read, batched eth_call (500 per request)':46} {batched:8.2f} {naive:9.2f} {batched / naive:6.2f}"
          "   (baseline: one web3 call() per escrow)")
    print(f"{'settlement vs risk, every escrow':46} {compare:8.2f} {plain:9.2f} {compare / plain:6.2f}"
          "   (baseline: one plain SELECT of the same join)")
    print(f"{'one pass (chain read + comparison)':46} {batched + compare:8.2f}")
    print(f"{'settlement vs risk: peak Python memory, MiB':46} {peak_mib:8.3f} {memory_mib:9.0f} "
          f"{peak_mib / memory_mib:6.3f}   (baseline: the function's memory)")
    report.record(f"reconcile {args.escrows:,}: chain read (vs one call per escrow)", batched, "s", naive)
    report.record(f"reconcile {args.escrows:,}: settlement vs risk (vs plain SELECT)", compare, "s", plain)
    report.record(f"reconcile {args.escrows:,}: comparison's peak memory (vs the function's)", peak_mib, "MiB",
                  memory_mib, target="bounded")


def _mebibytes(memory: str) -> float:
    """A Cloud Run memory size (`512Mi`, `1Gi`) in MiB."""
    units = {"Mi": 1, "Gi": 1024}
    return float(memory[:-2]) * units[memory[-2:]]


if __name__ == "__main__":
    main()
