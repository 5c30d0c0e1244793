"""Staging a block range with more logs than one statement can carry (PostgreSQL's 65,535 bind
parameters), against the real database."""

import sqlalchemy

from shared.envelope import Envelope
from shared.relay import checkpoint as cp
from shared.relay.settings import ChainSettings
from tests.support.events import unique_escrow_created

CHAIN = ChainSettings(rpc_url="", chain_id=31337, escrow_address="0x" + "ab" * 20, confirmations=0,
                      start_block=0, block_range=1, time_budget_seconds=1)


def test_ten_thousand_logs_stage_in_one_range(stack):
    engine = sqlalchemy.create_engine(stack.layout.database_url("fn_relay"))
    envelopes = [Envelope.from_json(unique_escrow_created()) for _ in range(10_000)]
    try:
        with engine.connect() as conn:
            with conn.begin() as transaction:
                new = cp.record_relayed_logs(conn, CHAIN, envelopes)
                again = cp.record_relayed_logs(conn, CHAIN, envelopes[:10])
                transaction.rollback()
    finally:
        engine.dispose()
    assert len(new) == 10_000
    assert again == set()
