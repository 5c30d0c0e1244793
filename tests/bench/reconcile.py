"""One reconcile pass over 100k escrows and 100k users: the chain read and the comparisons, each against a
plain baseline.

    make bench
    python -m tests.bench.reconcile --escrows 1000000 --users 1000000

Seeded (untimed): 100k escrows in settlement and the same 100k in risk's projection, consistent, on a
bench contract key. Measured, as fn_reconcile, with the reconciler's own code:
- reading the escrows from the contract with batched `eth_call` (`deals(id)`, 500 per request), against
  the naive baseline of one web3 `call()` per escrow (timed over 1,000 and scaled: the same anvil);
- comparing settlement with risk for all of them, against one plain SELECT of the same join read into
  the process; and the memory the comparison's Python allocations peak at (tracemalloc, a second run),
  against the reconcile function's memory in the topology (the comparison read every escrow into the
  run until it went to the database: 1.7 GiB at 1M escrows).
- comparing each registered user's copies with their sources (notify's contact and wallets, compliance's
  subject and reviews, settle's decision: shared/reconcile/users.py), against one plain SELECT of the same
  joins read into the process (the users seeded consistent in every domain, untimed).
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
from shared.reconcile.users import USER_COMPARISONS
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

USER_PREFIX = "bench-user-"
# Users consistent in every domain, their registrations and results published long ago (pruned).
_SEED_USERS = """
INSERT INTO identity.users (user_id, name, date_of_birth, country, email, phone, wallet_addresses,
    notification_channels, registered_at)
SELECT :prefix || i, 'Bench User', '1980-01-01', 'NL', :prefix || i || '@example.org', '+31201234567',
       jsonb_build_array('0xAB' || lpad(to_hex(i), 38, '0')), '["email"]', now() - interval '1 hour'
FROM generate_series(1, :n) AS i;
INSERT INTO identity.wallet_owners (wallet, user_id)
SELECT '0xAB' || lpad(to_hex(i), 38, '0'), :prefix || i FROM generate_series(1, :n) AS i;
INSERT INTO notify.contacts (user_id, email, phone, channels, registered_event_id)
SELECT :prefix || i, :prefix || i || '@example.org', '+31201234567', '["email"]', 'UserRegistered:' || :prefix || i
FROM generate_series(1, :n) AS i;
INSERT INTO notify.contact_wallets (wallet, user_id)
SELECT lower('0xAB' || lpad(to_hex(i), 38, '0')), :prefix || i FROM generate_series(1, :n) AS i;
INSERT INTO compliance.subjects (user_id, registered_event_id, correlation_id, wallet_addresses, decision,
    latest_screening_id, last_snapshot_id, result_sequence, updated_at)
SELECT :prefix || i, 'UserRegistered:' || :prefix || i, 'UserRegistered:' || :prefix || i,
       jsonb_build_array('0xAB' || lpad(to_hex(i), 38, '0')), 'APPROVED', 1, 1, 1, now() - interval '1 hour'
FROM generate_series(1, :n) AS i;
INSERT INTO settlement.compliance_statuses (user_id, decision, sequence, event_id, reasons, decided_at)
SELECT :prefix || i, 'APPROVED', 1, 'ComplianceScreened:' || :prefix || i || chr(58) || '1', '[]', now()
FROM generate_series(1, :n) AS i;
INSERT INTO settlement.compliance_wallets (wallet, user_id)
SELECT '0xAB' || lpad(to_hex(i), 38, '0'), :prefix || i FROM generate_series(1, :n) AS i
"""

_USERS_BASELINE = """
SELECT u.user_id, c.user_id, s.decision, s.result_sequence, h.decision, h.sequence
FROM identity.users u LEFT JOIN notify.contacts c USING (user_id) LEFT JOIN compliance.subjects s USING (user_id)
LEFT JOIN settlement.compliance_statuses h USING (user_id);
SELECT w.wallet, n.user_id FROM identity.wallet_owners w LEFT JOIN notify.contact_wallets n
ON n.wallet = lower(w.wallet) AND n.user_id = w.user_id;
SELECT s.user_id, w.wallet, h.wallet FROM compliance.subjects s
CROSS JOIN LATERAL jsonb_array_elements_text(s.wallet_addresses) AS w(wallet)
LEFT JOIN settlement.compliance_wallets h ON h.user_id = s.user_id AND h.wallet = w.wallet
"""

_BASELINE = """
SELECT e.escrow_id, e.state, e.sequence, e.depositor, e.amount, e.obligation_usd,
       p.state, p.sequence, p.depositor, p.collateral_amount, p.obligation_usd
FROM settlement.escrows e LEFT JOIN risk.positions p USING (chain_id, contract, escrow_id)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--escrows", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    stack = Stack(TEST_LAYOUT)
    stack.up()
    try:
        owner = sqlalchemy.create_engine(stack.layout.database_url())
        with owner.begin() as conn:
            for statement in _SEED.split(";"):
                conn.execute(sqlalchemy.text(statement), {"contract": CONTRACT, "n": args.escrows})
            for statement in _SEED_USERS.split(";"):
                conn.execute(sqlalchemy.text(statement), {"prefix": USER_PREFIX, "n": args.users})
        with owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sqlalchemy.text("ANALYZE"))
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

        started = time.perf_counter()
        user_drifts = [drift for compare in USER_COMPARISONS
                       for drift in compare(engine, settings.part(ReconcileSettings).grace_seconds, checked,
                                            lambda rows: None)]
        users_compare = time.perf_counter() - started
        started = time.perf_counter()
        with owner.connect() as conn:
            for statement in _USERS_BASELINE.split(";"):
                conn.execute(sqlalchemy.text(statement)).all()
        users_plain = time.perf_counter() - started
        ours += [d for d in user_drifts if d.key.startswith(USER_PREFIX)]
    finally:
        stack.down()
    assert len(read) == len(ids) and not ours, f"the seeded escrows and users must read back consistent: {ours[:3]}"
    print(f"reconcile over {args.escrows} escrows ({checked['settled escrows']} settled in the database) and "
          f"{args.users} users ({checked['registered users']} registered)")
    print(f"{'step':46} {'seconds':>8} {'baseline':>9} {'ratio':>6}")
    print(f"{'chain read, batched eth_call (500 per request)':46} {batched:8.2f} {naive:9.2f} {batched / naive:6.2f}"
          "   (baseline: one web3 call() per escrow)")
    print(f"{'settlement vs risk, every escrow':46} {compare:8.2f} {plain:9.2f} {compare / plain:6.2f}"
          "   (baseline: one plain SELECT of the same join)")
    print(f"{'users vs their copies, every user':46} {users_compare:8.2f} {users_plain:9.2f} "
          f"{users_compare / users_plain:6.2f}   (baseline: plain SELECTs of the same joins)")
    print(f"{'one pass (chain read + comparisons)':46} {batched + compare + users_compare:8.2f}")
    print(f"{'settlement vs risk: peak Python memory, MiB':46} {peak_mib:8.3f} {memory_mib:9.0f} "
          f"{peak_mib / memory_mib:6.3f}   (baseline: the function's memory)")
    report.record(f"reconcile {args.escrows:,}: chain read (vs one call per escrow)", batched, "s", naive)
    report.record(f"reconcile {args.escrows:,}: settlement vs risk (vs plain SELECT)", compare, "s", plain)
    report.record(f"reconcile {args.users:,} users: copies vs sources (vs plain SELECT)", users_compare, "s",
                  users_plain)
    report.record(f"reconcile {args.escrows:,}: comparison's peak memory (vs the function's)", peak_mib, "MiB",
                  memory_mib, target="bounded")


def _mebibytes(memory: str) -> float:
    """A Cloud Run memory size (`512Mi`, `1Gi`) in MiB."""
    units = {"Mi": 1, "Gi": 1024}
    return float(memory[:-2]) * units[memory[-2:]]


if __name__ == "__main__":
    main()
