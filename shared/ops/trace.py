"""One escrow's path through every stage, with timestamps and per-hop latency.

    python -m shared.ops.trace --url postgresql+pg8000://owner@host/escrow 31337:0xContract:7
    python -m shared.stack trace 31337:0xContract:7          (the demo stack)

It follows the escrow's correlation id (its creation log's event id, carried by every later log of the
escrow, every state change, margin event and delivery) through the tables each stage
writes: relay's relayed log and outbox, settle's inbox and transitions, assess-margin's inbox and
margin events, and for each margin event the price that caused it (fetch-price's decision), notify's
inbox, deliveries, attempts and provider callbacks. Read as the schemas' owner.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared import topics
from shared.addresses import checksum_address
from shared.api.escrow_queries import parse_escrow_key
from shared.errors import InvalidRequest
from shared.events import MARGIN_TIER_CHANGED


@dataclass(frozen=True)
class Stage:
    """One step of the escrow's path."""

    at: datetime
    stage: str
    detail: str


# The outboxes an escrow's events pass through, in pipeline order, and the consumers that receive them.
OUTBOX_SCHEMAS = ("relay", "settlement", "risk", "notify")
CONSUMERS = (("settlement", "settle"), ("risk", "assess-margin"), ("notify", "notify"))

# The escrow's margin events, found by its key (margin_events_by_escrow) rather than by scanning the table
# for the correlation id; the correlation id still tells an escrow from an earlier one a reorg voided.
_ESCROW_MARGIN_EVENTS = "chain_id = :c AND contract = :a AND escrow_id = :i AND correlation_id = :k"


def _rows(conn: Connection, sql: str, **params) -> list:
    return list(conn.execute(text(sql), params).mappings())


def escrow_trace(conn: Connection, chain_id: int, contract: str, escrow_id: Decimal) -> list[Stage]:
    """Every recorded stage of the escrow, in time order; empty if settle does not know it."""
    # Settle keys escrows by the checksummed contract: any spelling of it is found by the primary key.
    escrow = _rows(conn, "SELECT * FROM settlement.escrows WHERE chain_id = :c AND contract = :a AND escrow_id = :i",
                   c=chain_id, a=checksum_address(contract), i=escrow_id)
    if not escrow:
        return []
    e = escrow[0]
    correlation = e["created_event_id"]
    escrow_key = {"c": e["chain_id"], "a": e["contract"], "i": e["escrow_id"]}
    relayed = _rows(conn, "SELECT * FROM relay.relayed_logs WHERE envelope->>'correlation_id' = :k", k=correlation)
    if not any(row["event_id"] == correlation for row in relayed):
        stages = [Stage(e["created_at"], "chain", f"EscrowCreated in block {e['created_block']} ({correlation})")]
    else:
        stages = []
    for row in relayed:
        event = row["envelope"]
        # A block's time is the chain's clock (a local chain runs ahead when blocks are mined fast): the
        # chain line is placed no later than its relay line, and says the block's own time.
        block_time = datetime.fromisoformat(event["occurred_at"])
        stages.append(Stage(min(block_time, row["relayed_at"]), "chain",
                            f"{event['event_type']} in block {row['block_number']} at {block_time.isoformat()} "
                            f"({row['event_id']})"))
        stages.append(Stage(row["relayed_at"], "relay",
                            f"relayed {event['event_type']} {row['event_id']} (block {row['block_number']})"))
    # Each outbox read once; what the consumers received is then read by their inbox key (consumer, dedupe_key).
    delivered_keys = [row["dedupe_key"] for row in relayed]
    for schema in OUTBOX_SCHEMAS:
        for row in _rows(conn, f"SELECT * FROM {schema}.outbox WHERE envelope->>'correlation_id' = :k", k=correlation):
            delivered_keys.append(row["dedupe_key"])
            if row["published_at"] is not None:
                stages.append(Stage(row["published_at"], f"{schema} published",
                                    f"{row['envelope']['event_type']} on {row['topic']}"))
    margin_events = _rows(conn, f"SELECT * FROM risk.margin_events WHERE {_ESCROW_MARGIN_EVENTS}", k=correlation,
                          **escrow_key)
    delivered_keys += [row["event_id"] for row in margin_events]
    for schema, consumer in CONSUMERS:
        for row in _rows(conn, f"SELECT * FROM {schema}.inbox WHERE consumer = :n "
                               "AND dedupe_key = ANY(CAST(:keys AS text[]))", n=consumer, keys=delivered_keys):
            stages.append(Stage(row["received_at"], f"{consumer} received", f"{row['event_type']} ({row['outcome']})"))
    for row in _rows(conn, "SELECT * FROM settlement.transitions WHERE chain_id = :c AND contract = :a "
                           "AND escrow_id = :i", **escrow_key):
        change = f"{row['from_state'] or '(new)'} -> {row['to_state']}"
        stages.append(Stage(row["recorded_at"], "settle applied", change))
    for row in _rows(conn, "SELECT * FROM settlement.late_events WHERE chain_id = :c AND contract = :a "
                           "AND escrow_id = :i", **escrow_key):
        reverted = " (its log orphaned since)" if row["reverted_at"] else ""
        stages.append(Stage(row["recorded_at"], "settle recorded late",
                            f"{row['from_state']} -> {row['to_state']} at block {row['block_number']}{reverted}"))
    for row in margin_events:
        for decision in _rows(conn, "SELECT * FROM pricing.decisions WHERE published_event_id = :p",
                              p=row["cause_event_id"]):
            stages.append(Stage(decision["decided_at"], "fetch-price decided",
                                f"{decision['status']} {decision['price']} ({decision['published_event_id']})"))
        stages.append(Stage(row["occurred_at"], "assess-margin",
                            f"{row['previous_tier']} -> {row['tier']} at health factor {row['health_factor']}"))
        if row["published_at"] is not None:
            stages.append(Stage(row["published_at"], "risk published",
                                f"{MARGIN_TIER_CHANGED} on {topics.MARGIN_EVENTS}"))
    for row in _rows(conn, "SELECT * FROM notify.deliveries WHERE correlation_id = :k", k=correlation):
        stages.append(Stage(row["created_at"], "notify planned", f"{row['channel']} delivery {row['id']}"))
        for attempt in _rows(conn, "SELECT * FROM notify.delivery_attempts WHERE delivery_id = :d", d=row["id"]):
            stages.append(Stage(attempt["finished_at"], f"notify {row['channel']}",
                                f"attempt {attempt['attempt']}: {attempt['outcome']} ({attempt['status_code']})"))
        for callback in _rows(conn, "SELECT * FROM notify.provider_events WHERE delivery_id = :d OR "
                                    "(provider_message_id IS NOT NULL AND provider_message_id = :m)",
                              d=row["id"], m=row["provider_message_id"]):
            stages.append(Stage(callback["received_at"], f"{callback['provider']} callback",
                                f"{row['channel']}: {callback['event']}"))
        stages.append(Stage(row["updated_at"], f"{row['channel']} final", row["status"]))
    return sorted(stages, key=lambda s: s.at)


def format_trace(stages: list[Stage]) -> str:
    """The stages as lines: time, milliseconds since the previous stage, stage, detail."""
    lines, previous = [], None
    for stage in stages:
        delta = "" if previous is None else f"+{(stage.at - previous).total_seconds() * 1000:,.0f} ms"
        lines.append(f"{stage.at.isoformat(timespec='milliseconds')}  {delta:>12}  {stage.stage:22} {stage.detail}")
        previous = stage.at
    return "\n".join(lines)


def parse_key(key: str) -> tuple[int, str, Decimal]:
    """`chain_id:contract:escrow_id` -> its parts, read as the api reads an escrow's id (any EIP-55-valid
    spelling of the contract, checksummed); ValueError saying what is wrong."""
    try:
        return parse_escrow_key(key)
    except InvalidRequest as exc:
        raise ValueError(f"{key!r}: {exc}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of a role that can read every schema")
    parser.add_argument("escrow", help="chain_id:contract:escrow_id")
    args = parser.parse_args()
    try:
        key = parse_key(args.escrow)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    engine = sqlalchemy.create_engine(args.url)
    with engine.connect() as conn:
        stages = escrow_trace(conn, *key)
    print(format_trace(stages) if stages else f"no escrow {args.escrow}")


if __name__ == "__main__":
    main()
