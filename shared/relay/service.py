"""One relay tick: scan confirmed blocks for escrow logs, stage them in the outbox, publish.

The checkpoint and the outbox rows of a block range are written in one transaction, so the
checkpoint never passes a log that is not safely staged; publishing follows, and anything a crash
leaves unpublished goes out at the start of the next tick.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from web3 import Web3

from shared.chain.client import escrow_contract, get_web3
from shared.chain.escrow_logs import DECODERS, chain_log_event_id
from shared.db import get_engine, transaction
from shared.envelope import Envelope, utc_iso
from shared.errors import ChainUnavailable
from shared.messaging import outbox
from shared.relay.tables import SCHEMA, checkpoints
from shared.settings import ChainSettings, Settings

log = logging.getLogger(__name__)

EVENTS_TOPIC = "settlement.events.v1"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TickResult:
    """What one tick did."""

    scanned_from: int | None
    scanned_to: int | None
    logs: int
    published: int
    skipped_busy: bool = False


def calculate_target_block(head: int, confirmations: int) -> int:
    """The newest block deep enough to trust: `confirmations` blocks below the head."""
    return head - confirmations


def lock_key(chain: ChainSettings) -> int:
    """The advisory-lock key for this chain and contract (stable across processes)."""
    return zlib.crc32(f"relay:{chain.chain_id}:{chain.escrow_address.lower()}".encode())


def run_tick(settings: Settings) -> TickResult:
    """Relay every confirmed escrow log since the checkpoint, within the time budget."""
    chain = settings.require_chain()
    engine = get_engine(settings.database)
    w3 = get_web3(chain.rpc_url)
    # First publish what an earlier crash may have left staged but unpublished.
    published = _publish_staged(engine, settings)
    with engine.connect() as lock_conn:
        key = lock_key(chain)
        got_lock = lock_conn.execute(select(func.pg_try_advisory_lock(key))).scalar()
        lock_conn.commit()
        if not got_lock:
            log.info("another relay is scanning; returning", extra={"lock_key": key})
            return TickResult(None, None, 0, published, skipped_busy=True)
        try:
            first, last, count = _scan(engine, w3, chain)
        finally:
            lock_conn.execute(select(func.pg_advisory_unlock(key)))
            lock_conn.commit()
    published += _publish_staged(engine, settings)
    log.info(
        "relay tick done",
        extra={"scanned_from": first, "scanned_to": last, "logs": count, "published": published},
    )
    return TickResult(first, last, count, published)


def _publish_staged(engine, settings: Settings) -> int:
    return outbox.publish_pending(engine, SCHEMA, settings.project_id, settings.publish_timeout_seconds)


def _scan(engine, w3: Web3, chain: ChainSettings) -> tuple[int | None, int | None, int]:
    deadline = time.monotonic() + chain.time_budget_seconds
    contract = escrow_contract(w3, chain.escrow_address)
    target = calculate_target_block(_rpc(lambda: w3.eth.block_number), chain.confirmations)
    first = last = None
    count = 0
    while time.monotonic() < deadline:
        with transaction(engine) as conn:
            start = _checkpoint_block(conn, chain) + 1
            if start > target:
                break
            end = min(target, start + chain.block_range - 1)
            count += _stage_range(conn, w3, contract, chain, start, end)
            end_hash = _rpc(lambda: w3.eth.get_block(end)["hash"]).to_0x_hex()
            _save_checkpoint(conn, chain, end, end_hash)
        first = start if first is None else first
        last = end
    return first, last, count


def _stage_range(conn: Connection, w3: Web3, contract, chain: ChainSettings, start: int, end: int) -> int:
    raw_logs = _rpc(
        lambda: w3.eth.get_logs({"address": contract.address, "fromBlock": start, "toBlock": end})
    )
    decoders = _decoders_by_topic(contract)
    block_times: dict[int, str] = {}
    staged = 0
    for raw in raw_logs:
        decoder = decoders.get(_hex(raw["topics"][0]))
        if decoder is None:
            continue  # an event this relay does not forward
        event, event_type, build_payload = decoder
        payload = build_payload(chain.chain_id, event.process_log(raw))
        number = payload["block_number"]
        if number not in block_times:
            timestamp = _rpc(lambda: w3.eth.get_block(number)["timestamp"])
            block_times[number] = utc_iso(datetime.fromtimestamp(timestamp, UTC))
        event_id = chain_log_event_id(chain.chain_id, payload["tx_hash"], payload["log_index"])
        envelope = Envelope(
            event_id=event_id,
            event_type=event_type,
            schema_version=SCHEMA_VERSION,
            occurred_at=block_times[number],
            correlation_id=event_id,
            causation_id=None,
            payload=payload,
        )
        outbox.enqueue(conn, SCHEMA, EVENTS_TOPIC, envelope)
        staged += 1
    return staged


def _decoders_by_topic(contract) -> dict:
    """topic0 (0x-hex) -> (contract event, wire event type, payload builder)."""
    decoders = {}
    for name, (event_type, build_payload) in DECODERS.items():
        event = getattr(contract.events, name)()
        decoders[_hex(event.topic)] = (event, event_type, build_payload)
    return decoders


def _hex(value) -> str:
    text = value.to_0x_hex() if hasattr(value, "to_0x_hex") else str(value)
    return text.lower()


def _checkpoint_block(conn: Connection, chain: ChainSettings) -> int:
    stored = conn.execute(
        select(checkpoints.c.block_number).where(
            checkpoints.c.chain_id == chain.chain_id,
            checkpoints.c.contract == chain.escrow_address.lower(),
        )
    ).scalar()
    return stored if stored is not None else chain.start_block - 1


def _save_checkpoint(conn: Connection, chain: ChainSettings, number: int, block_hash: str) -> None:
    statement = insert(checkpoints).values(
        chain_id=chain.chain_id,
        contract=chain.escrow_address.lower(),
        block_number=number,
        block_hash=block_hash,
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["chain_id", "contract"],
            set_={"block_number": number, "block_hash": block_hash, "updated_at": func.now()},
        )
    )


def _rpc(call):
    """Run one JSON-RPC call, mapping provider failures to ChainUnavailable."""
    try:
        return call()
    except (OSError, TimeoutError, ValueError) as exc:
        raise ChainUnavailable(f"JSON-RPC call failed: {exc!r}") from exc
