"""Reading and writing relay's checkpoint, block hashes and relayed-log records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from shared.db import in_chunks
from shared.envelope import Envelope
from shared.relay.ranges import RangeState
from shared.relay.settings import ChainSettings
from shared.relay.tables import blocks, checkpoints, relayed_logs


@dataclass(frozen=True)
class Checkpoint:
    """The last scanned block (number and hash; hash empty before the first scan) and range state."""

    block_number: int
    block_hash: str
    range: RangeState


def _key(chain: ChainSettings) -> dict:
    return {"chain_id": chain.chain_id, "contract": chain.escrow_address.lower()}


def load(conn: Connection, chain: ChainSettings, *, for_update: bool = True) -> Checkpoint:
    """The checkpoint, locked for this transaction; the configured start when there is none."""
    query = select(checkpoints).where(
        checkpoints.c.chain_id == chain.chain_id, checkpoints.c.contract == chain.escrow_address.lower()
    )
    row = conn.execute(query.with_for_update() if for_update else query).first()
    if row is None:
        return Checkpoint(chain.start_block - 1, "", RangeState(chain.block_range, 0))
    return Checkpoint(row.block_number, row.block_hash, RangeState(row.range_size, row.range_successes))


def save(conn: Connection, chain: ChainSettings, number: int, block_hash: str, state: RangeState) -> None:
    """Upsert the checkpoint."""
    values = {"block_number": number, "block_hash": block_hash, "range_size": state.size,
              "range_successes": state.successes}
    statement = insert(checkpoints).values(**_key(chain), **values)
    conn.execute(statement.on_conflict_do_update(
        index_elements=["chain_id", "contract"], set_={**values, "updated_at": func.now()}
    ))


def record_block(conn: Connection, chain: ChainSettings, number: int, block_hash: str) -> None:
    """Remember the hash a scanned block had."""
    record_blocks(conn, chain, {number: block_hash})


def record_blocks(conn: Connection, chain: ChainSettings, hashes: dict[int, str]) -> None:
    """Remember the hashes of several scanned blocks in one statement."""
    rows = [{**_key(chain), "block_number": number, "block_hash": block_hash} for number, block_hash in hashes.items()]
    for chunk in in_chunks(rows):
        statement = insert(blocks).values(list(chunk))
        conn.execute(statement.on_conflict_do_update(
            index_elements=["chain_id", "contract", "block_number"], set_={"block_hash": statement.excluded.block_hash}
        ))


def record_relayed_logs(conn: Connection, chain: ChainSettings, envelopes: list[Envelope]) -> set[str]:
    """Remember relayed logs (for compensation after a reorg); return the dedupe keys that were new."""
    rows = [
        {**_key(chain), "dedupe_key": envelope.dedupe_key, "event_id": envelope.event_id,
         "block_number": envelope.payload["block_number"], "log_index": envelope.payload["log_index"],
         "envelope": envelope.to_json()}
        for envelope in envelopes
    ]
    inserted: set[str] = set()
    for chunk in in_chunks(rows):
        inserted.update(conn.execute(
            insert(relayed_logs).values(list(chunk))
            .on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(relayed_logs.c.dedupe_key)
        ).scalars())
    return inserted


def stored_blocks_from(conn: Connection, chain: ChainSettings, number: int) -> Sequence:
    """Stored (block_number, block_hash) at or below `number`, newest first."""
    return conn.execute(
        select(blocks.c.block_number, blocks.c.block_hash)
        .where(blocks.c.chain_id == chain.chain_id, blocks.c.contract == chain.escrow_address.lower(),
               blocks.c.block_number <= number)
        .order_by(blocks.c.block_number.desc())
    ).all()


def live_logs_after(conn: Connection, chain: ChainSettings, number: int) -> Sequence:
    """Relayed, not yet compensated logs in blocks after `number`, newest first."""
    return conn.execute(
        select(relayed_logs.c.dedupe_key, relayed_logs.c.envelope)
        .where(relayed_logs.c.chain_id == chain.chain_id,
               relayed_logs.c.contract == chain.escrow_address.lower(),
               relayed_logs.c.block_number > number, relayed_logs.c.removed_at.is_(None))
        .order_by(relayed_logs.c.block_number.desc(), relayed_logs.c.log_index.desc())
    ).all()


def mark_removed(conn: Connection, dedupe_key: str) -> None:
    """Mark a relayed log as compensated."""
    conn.execute(update(relayed_logs).where(relayed_logs.c.dedupe_key == dedupe_key)
                 .values(removed_at=func.now()))


def forget_blocks_after(conn: Connection, chain: ChainSettings, number: int) -> None:
    """Drop stored hashes of blocks after `number` (they belong to an abandoned fork)."""
    conn.execute(delete(blocks).where(
        blocks.c.chain_id == chain.chain_id, blocks.c.contract == chain.escrow_address.lower(),
        blocks.c.block_number > number,
    ))


def creation_event_ids(conn: Connection, chain: ChainSettings, escrow_ids: set[str]) -> dict[str, str]:
    """escrow id -> event id of its live EscrowCreated log already relayed (its correlation id)."""
    if not escrow_ids:
        return {}
    rows = conn.execute(text(
        "SELECT DISTINCT ON (envelope->'payload'->>'escrow_id') envelope->'payload'->>'escrow_id' AS escrow_id, "
        "event_id FROM relay.relayed_logs "
        "WHERE chain_id = :chain_id AND contract = :contract AND removed_at IS NULL "
        "AND envelope->>'event_type' = 'EscrowCreated' "
        "AND envelope->'payload'->>'escrow_id' = ANY(CAST(:ids AS text[])) "
        "ORDER BY envelope->'payload'->>'escrow_id', block_number DESC, log_index DESC"
    ), {**_key(chain), "ids": sorted(escrow_ids)}).all()
    return {row.escrow_id: row.event_id for row in rows}
