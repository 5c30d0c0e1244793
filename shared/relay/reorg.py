"""Reorganisation repair: find the common ancestor, compensate orphaned logs, rewind."""

from __future__ import annotations

import logging

from shared.chain.escrow_logs import chain_attributes, removal_event_id
from shared.chain.reader import ChainReader
from shared.db import Connection
from shared.envelope import Envelope
from shared.messaging import outbox
from shared.relay import SCHEMA
from shared.relay import checkpoint as cp
from shared.relay.checkpoint import Checkpoint
from shared.relay.settings import ChainSettings

log = logging.getLogger(__name__)


def find_common_ancestor(conn: Connection, reader: ChainReader, chain: ChainSettings, below: int) -> int:
    """The newest stored block at or below `below` whose hash the canonical chain still has."""
    for number, stored_hash in cp.stored_blocks_from(conn, chain, below):
        if reader.block_hash(number) == stored_hash:
            return number
    return chain.start_block - 1


def compensation_for(relayed: dict) -> Envelope:
    """The `removed` event that undoes a relayed log: same type and payload, `removed` set."""
    original = Envelope(**relayed)
    return Envelope(
        event_id=removal_event_id(original.event_id),
        event_type=original.event_type,
        schema_version=original.schema_version,
        occurred_at=original.occurred_at,
        correlation_id=original.correlation_id,
        causation_id=original.event_id,
        payload={**original.payload, "removed": True},
    )


def repair_reorg(conn: Connection, reader: ChainReader, chain: ChainSettings, checkpoint: Checkpoint,
                 topic: str) -> int:
    """Compensate every log relayed from orphaned blocks and rewind to the common ancestor."""
    ancestor = find_common_ancestor(conn, reader, chain, checkpoint.block_number - 1)
    orphaned = cp.live_logs_after(conn, chain, ancestor)
    for row in orphaned:
        compensation = compensation_for(row.envelope)
        outbox.enqueue(conn, SCHEMA, topic, compensation, chain_attributes(compensation.payload))
        cp.mark_removed(conn, row.dedupe_key)
    cp.forget_blocks_after(conn, chain, ancestor)
    ancestor_hash = reader.block_hash(ancestor) if ancestor >= 0 else ""
    cp.save(conn, chain, ancestor, ancestor_hash, checkpoint.range)
    log.warning(
        "chain reorganisation repaired",
        extra={"checkpoint_block": checkpoint.block_number, "common_ancestor": ancestor,
               "depth": checkpoint.block_number - ancestor, "compensated_logs": len(orphaned)},
    )
    return ancestor
