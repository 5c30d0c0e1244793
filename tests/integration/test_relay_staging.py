"""Staging a block range with more logs than one statement can carry (PostgreSQL's 65,535 bind
parameters), against the real database: remembered for compensation and staged in the outbox at once,
a chunk of logs a statement."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy
from sqlalchemy.engine import Connection

from shared.envelope import Envelope
from shared.relay import checkpoint as cp
from shared.relay.settings import ChainSettings
from tests.support.database import OnSqlAlchemy
from tests.support.events import unique_escrow_created

CHAIN = ChainSettings(rpc_url="", chain_id=31337, escrow_address="0x" + "ab" * 20, confirmations=0,
                      start_block=0, block_range=1, time_budget_seconds=1)
TOPIC = "settlement.events.v1"


@pytest.fixture
def relay_transaction(stack) -> Iterator:
    """Open a transaction as relay's database user, rolled back afterwards."""
    engine = sqlalchemy.create_engine(stack.layout.database_url("fn_relay"))

    @contextmanager
    def opened() -> Iterator[OnSqlAlchemy]:
        with engine.connect() as conn, conn.begin() as transaction:
            try:
                yield OnSqlAlchemy(conn)
            finally:
                transaction.rollback()

    try:
        yield opened
    finally:
        engine.dispose()


def _events(envelopes: list[Envelope]) -> list[tuple[Envelope, dict[str, str]]]:
    return [(envelope, {"chain_id": "31337"}) for envelope in envelopes]


def _remembered(conn: Connection, envelopes: list[Envelope]) -> int:
    return conn.execute(sqlalchemy.text("SELECT count(*) FROM relay.relayed_logs WHERE dedupe_key = ANY(:keys)"),
                        {"keys": [e.dedupe_key for e in envelopes]}).scalar_one()


def test_ten_thousand_logs_stage_in_one_range(relay_transaction):
    envelopes = [Envelope.from_json(unique_escrow_created()) for _ in range(10_000)]
    with relay_transaction() as conn:
        staged = cp.record_and_stage(conn, CHAIN, TOPIC, _events(envelopes), 30)
        remembered = _remembered(conn, envelopes)
        # Logs relayed before are neither remembered again nor staged again, even in a new order.
        again = cp.record_and_stage(conn, CHAIN, TOPIC, _events(envelopes[:10][::-1]), 30)
    assert remembered == 10_000
    # Staged in the range's order (the order of publishing), each with its envelope and attributes.
    assert [s.message.data for s in staged] == [e.to_bytes() for e in envelopes]
    assert [s.id for s in staged] == sorted(s.id for s in staged)
    assert staged[0].message.attributes == {**envelopes[0].attributes(), "chain_id": "31337"}
    assert again == []


def test_a_log_repeated_in_a_later_chunk_is_staged_once_at_its_first_place(relay_transaction, monkeypatch):
    """A range staged in several statements (`STAGING_CHUNK` logs each) keeps the range's order across
    them, and a log seen again in a later chunk is recognised as relayed, as it is within one chunk."""
    monkeypatch.setattr(cp, "STAGING_CHUNK", 3)
    envelopes = [Envelope.from_json(unique_escrow_created()) for _ in range(7)]
    # Chunks: [0 1 2] [3 1 4] [5 6 1]: log 1 again in the second and third.
    repeated = [envelopes[i] for i in (0, 1, 2, 3, 1, 4, 5, 6, 1)]
    with relay_transaction() as conn:
        staged = cp.record_and_stage(conn, CHAIN, TOPIC, _events(repeated), 30)
        remembered = _remembered(conn, envelopes)
        outbox_rows = conn.execute(sqlalchemy.text(
            "SELECT event_id FROM relay.outbox WHERE dedupe_key = ANY(:keys) ORDER BY id"),
            {"keys": [e.dedupe_key for e in envelopes]}).scalars().all()
    assert remembered == 7
    assert [s.message.data for s in staged] == [e.to_bytes() for e in envelopes]
    assert outbox_rows == [e.event_id for e in envelopes]
    assert [s.id for s in staged] == sorted(s.id for s in staged)


def test_staging_a_chunk_writes_no_temporary_files(relay_transaction):
    """The staging transaction's work_mem holds a chunk of `STAGING_CHUNK` logs (`STAGING_WORK_MEM`); with
    PostgreSQL's default the statement spilled 7 MB to temporary files."""
    events = _events([Envelope.from_json(unique_escrow_created()) for _ in range(cp.STAGING_CHUNK + 1)])
    with relay_transaction() as conn:
        cp.record_and_stage(conn, CHAIN, TOPIC, events[:1], 30)  # the transaction's setting
        _, statements = cp._staging(CHAIN, TOPIC, events[1:], 30)
        chunk = next(statements)
        plan = conn.execute(sqlalchemy.text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + cp._RECORD_AND_STAGE.text),
                            chunk).scalar_one()
    assert next(statements, None) is None
    top = plan[0]["Plan"]
    assert top["Actual Rows"] == cp.STAGING_CHUNK
    assert top["Temp Written Blocks"] == 0
