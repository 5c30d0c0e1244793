"""Staging a block range with more logs than one statement can carry (PostgreSQL's 65,535 bind
parameters), against the real database: remembered for compensation and staged in the outbox at once."""

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
    events = [(envelope, {"chain_id": "31337"}) for envelope in envelopes]
    try:
        with engine.connect() as conn:
            with conn.begin() as transaction:
                staged = cp.record_and_stage(conn, CHAIN, "settlement.events.v1", events, 30)
                remembered = conn.execute(sqlalchemy.text(
                    "SELECT count(*) FROM relay.relayed_logs WHERE dedupe_key = ANY(:keys)"),
                    {"keys": [e.dedupe_key for e in envelopes]}).scalar_one()
                # Logs relayed before are neither remembered again nor staged again, even in a new order.
                again = cp.record_and_stage(conn, CHAIN, "settlement.events.v1", events[:10][::-1], 30)
                transaction.rollback()
    finally:
        engine.dispose()
    assert remembered == 10_000
    # Staged in the range's order (the order of publishing), each with its envelope and attributes.
    assert [s.message.data for s in staged] == [e.to_bytes() for e in envelopes]
    assert [s.id for s in staged] == sorted(s.id for s in staged)
    assert staged[0].message.attributes == {**envelopes[0].attributes(), "chain_id": "31337"}
    assert again == []


def test_staging_ten_thousand_logs_writes_no_temporary_files(stack):
    """The staging transaction's work_mem holds a 10,000-log range (`STAGING_WORK_MEM`); with PostgreSQL's
    default the statement spilled 46 MB to temporary files."""
    engine = sqlalchemy.create_engine(stack.layout.database_url("fn_relay"))
    events = [(Envelope.from_json(unique_escrow_created()), {"chain_id": "31337"}) for _ in range(10_001)]
    try:
        with engine.connect() as conn:
            with conn.begin() as transaction:
                cp.record_and_stage(conn, CHAIN, "settlement.events.v1", events[:1], 30)  # the transaction's setting
                _, parameters = cp._staging(CHAIN, "settlement.events.v1", events[1:], 30)
                plan = conn.execute(sqlalchemy.text(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + cp._RECORD_AND_STAGE.text), parameters).scalar_one()
                transaction.rollback()
    finally:
        engine.dispose()
    top = plan[0]["Plan"]
    assert top["Actual Rows"] == 10_000
    assert top["Temp Written Blocks"] == 0
