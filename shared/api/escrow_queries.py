"""Escrow queries for the API: filter parsing (pure) and keyset-paged reads."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from shared.addresses import canonical_address
from shared.db import Connection, sql
from shared.errors import InvalidRequest
from shared.events import MAX_BIGINT, MAX_UINT256
from shared.settlement import SCHEMA
from shared.settlement.holds import escrow_hold, holds_on
from shared.settlement.states import EscrowState

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
QUERY_PARAMETERS = ("contract", "escrow_id", "user", "status", "created_from", "created_to",
                    "updated_from", "updated_to", "limit", "cursor")
# Keyset order: creation time, then the natural key, so pages never skip or repeat a row.
_ORDER = "created_at, chain_id, contract, escrow_id"
_KEY = "chain_id = :chain_id AND contract = :contract AND escrow_id = :escrow_id"
_ESCROW = sql(f"SELECT * FROM {SCHEMA}.escrows WHERE {_KEY}")
_TRANSITIONS = sql(f"SELECT * FROM {SCHEMA}.transitions WHERE {_KEY} ORDER BY sequence")
_LATE_EVENTS = sql(f"SELECT * FROM {SCHEMA}.late_events WHERE {_KEY} ORDER BY block_number, log_index")


@dataclass(frozen=True)
class EscrowFilter:
    """A validated escrow query."""

    contract: str | None = None
    escrow_id: Decimal | None = None
    user: str | None = None
    states: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple | None = field(default=None)


def _address(value: str) -> str | None:
    """The checksummed address, in any EIP-55-valid spelling; None for anything else."""
    try:
        return canonical_address(value)
    except ValueError:
        return None


def _whole_number(value: str, maximum: int) -> int | None:
    """ASCII digits only (str.isdigit also takes '²' and other scripts' digits), within 0..maximum."""
    if not value.isascii() or not value.isdigit() or len(value) > len(str(maximum)):
        return None
    number = int(value)
    return number if number <= maximum else None


def _moment(value: str) -> datetime | None:
    """A timestamp with a UTC offset, in UTC; None when unreadable or not representable in UTC."""
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.astimezone(UTC) if parsed.utcoffset() is not None else None
    except (ValueError, OverflowError):  # 0001-01-01T00:00+14:00 is before year 1 in UTC
        return None


def encode_cursor(row) -> str:
    """An opaque cursor pointing after `row`."""
    key = [row["created_at"].isoformat(), row["chain_id"], row["contract"], str(row["escrow_id"])]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode_cursor(value: str) -> tuple | None:
    try:
        created_at, chain_id, contract, escrow_id = json.loads(base64.urlsafe_b64decode(value.encode()))
        moment = _moment(created_at)
        chain = _whole_number(str(chain_id), MAX_BIGINT)
        escrow = _whole_number(str(escrow_id), MAX_UINT256)
        address = _address(contract)
        if moment is None or chain is None or escrow is None or address is None:
            return None
        return moment, chain, address, Decimal(escrow)
    except (ValueError, TypeError, InvalidOperation, RecursionError):
        return None


def parse_escrow_filter(args) -> EscrowFilter:
    """The query in `args` (a werkzeug MultiDict), or InvalidRequest naming each bad parameter."""
    problems: dict[str, str] = {}
    values: dict = {}
    for unknown in sorted(set(args) - set(QUERY_PARAMETERS)):
        problems[unknown] = f"is not a query parameter; use {', '.join(QUERY_PARAMETERS)}"
    for name in ("contract", "user"):
        if name in args:
            values[name] = _address(args[name]) or problems.setdefault(name, "must be an Ethereum address")
    if "escrow_id" in args:
        escrow_id = _whole_number(args["escrow_id"], MAX_UINT256)
        if escrow_id is None:
            problems["escrow_id"] = "must be a uint256 in ASCII digits"
        else:
            values["escrow_id"] = Decimal(escrow_id)
    if "status" in args:
        states = [s for raw in args.getlist("status") for s in raw.split(",") if s]
        known = {state.value for state in EscrowState}
        if not states or any(s not in known for s in states):
            problems["status"] = f"must be one or more of {', '.join(sorted(known))}"
        values["states"] = tuple(dict.fromkeys(states))
    for name in ("created_from", "created_to", "updated_from", "updated_to"):
        if name in args:
            values[name] = _moment(args[name]) or problems.setdefault(
                name, "must be an ISO-8601 timestamp with a UTC offset, like 2026-11-20T00:00:00+00:00")
    if "limit" in args:
        limit = _whole_number(args["limit"], MAX_LIMIT)
        if limit:
            values["limit"] = limit
        else:
            problems["limit"] = f"must be an integer from 1 to {MAX_LIMIT}"
    if "cursor" in args:
        values["after"] = _decode_cursor(args["cursor"]) or problems.setdefault(
            "cursor", "is not a cursor this API returned")
    if problems:
        raise InvalidRequest(problems)
    return EscrowFilter(**values)


def _conditions(f: EscrowFilter) -> tuple[list[str], dict]:
    """The filter's conditions on escrows, with their parameters."""
    conditions: list[str] = []
    parameters: dict = {}

    def condition(text: str, **values) -> None:
        conditions.append(text)
        parameters.update(values)

    if f.contract:
        condition("contract = :contract", contract=f.contract)
    if f.escrow_id is not None:
        condition("escrow_id = :escrow_id", escrow_id=f.escrow_id)
    if f.user:
        condition("(depositor = :user OR beneficiary = :user)", user=f.user)
    if f.states:
        condition("state = ANY(CAST(:states AS text[]))", states=list(f.states))
    for column, lower, upper in (("created_at", f.created_from, f.created_to),
                                 ("updated_at", f.updated_from, f.updated_to)):
        if lower:
            condition(f"{column} >= :{column}_from", **{f"{column}_from": lower})
        if upper:
            condition(f"{column} < :{column}_to", **{f"{column}_to": upper})
    if f.after:
        condition(f"({_ORDER}) > (:after_created_at, :after_chain_id, :after_contract, :after_escrow_id)",
                  **dict(zip(("after_created_at", "after_chain_id", "after_contract", "after_escrow_id"), f.after,
                             strict=True)))
    return conditions, parameters


def escrow_document(row, holds: dict[str, dict]) -> dict:
    """An escrow record as the API shows it, with its compliance hold (from `holds_on`) or null."""
    return {
        "id": f"{row['chain_id']}:{row['contract']}:{row['escrow_id']}",
        "chain_id": row["chain_id"],
        "contract": row["contract"],
        "escrow_id": str(row["escrow_id"]),
        "depositor": row["depositor"],
        "beneficiary": row["beneficiary"],
        "asset": row["asset"],
        "amount": str(row["amount"]),
        "obligation_usd": f"{row['obligation_usd']:.8f}",
        "deadline": row["deadline"].isoformat(),
        "state": row["state"],
        "sequence": row["sequence"],
        "last_block": row["last_block"],
        "last_log_index": row["last_log_index"],
        "created_block": row["created_block"],
        "created_tx": row["created_tx"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "compliance_hold": escrow_hold(row["depositor"], row["beneficiary"], holds),
    }


def find_escrows(conn: Connection, f: EscrowFilter) -> dict:
    """One page of escrows matching the filter, with the cursor of the next page (or null)."""
    conditions, parameters = _conditions(f)
    rows = conn.execute(sql(
        f"SELECT * FROM {SCHEMA}.escrows WHERE {' AND '.join(['true', *conditions])} ORDER BY {_ORDER} LIMIT :limit"
    ), {**parameters, "limit": f.limit + 1}).mappings().all()
    page = rows[: f.limit]
    holds = holds_on(conn, [row[party] for row in page for party in ("depositor", "beneficiary")])
    return {
        "items": [escrow_document(row, holds) for row in page],
        "next_cursor": encode_cursor(page[-1]) if len(rows) > f.limit else None,
    }


def parse_escrow_key(key: str) -> tuple[int, str, Decimal]:
    """`chain_id:contract:escrow_id` -> its parts, or InvalidRequest."""
    parts = key.split(":")
    if len(parts) == 3:
        chain_id, contract, escrow_id = (_whole_number(parts[0], MAX_BIGINT), _address(parts[1]),
                                         _whole_number(parts[2], MAX_UINT256))
        if chain_id is not None and contract is not None and escrow_id is not None:
            return chain_id, contract, Decimal(escrow_id)
    raise InvalidRequest({"id": "must be chain_id:contract:escrow_id, like 31337:0x5FbD…0aa3:1"})


def get_escrow(conn: Connection, key: str) -> dict | None:
    """The escrow with its full transition history and the late events that complete it, or None."""
    chain_id, contract, escrow_id = parse_escrow_key(key)
    escrow = {"chain_id": chain_id, "contract": contract, "escrow_id": escrow_id}
    row = conn.execute(_ESCROW, escrow).mappings().first()
    if row is None:
        return None
    history = conn.execute(_TRANSITIONS, escrow).mappings().all()
    late = conn.execute(_LATE_EVENTS, escrow).mappings().all()
    stepped = {t["dedupe_key"] for t in history if t["reverted_at"] is None}
    holds = holds_on(conn, [row["depositor"], row["beneficiary"]])
    return {**escrow_document(row, holds), "transitions": [
        {"sequence": t["sequence"], "from_state": t["from_state"], "to_state": t["to_state"],
         "event_id": t["event_id"], "block_number": t["block_number"], "log_index": t["log_index"],
         "occurred_at": t["occurred_at"].isoformat(),
         "reverted_at": t["reverted_at"].isoformat() if t["reverted_at"] else None,
         "reverts_event_id": t["reverts_event_id"]}
        for t in history
    ], "late_events": [
        {"event_id": e["event_id"], "event_type": e["event_type"], "from_state": e["from_state"],
         "to_state": e["to_state"], "block_number": e["block_number"], "log_index": e["log_index"],
         "occurred_at": e["occurred_at"].isoformat(), "recorded_at": e["recorded_at"].isoformat(),
         "reverted_at": e["reverted_at"].isoformat() if e["reverted_at"] else None}
        # One a reorganisation's repair applied since (a live step now) is shown once: as the step.
        for e in late if e["dedupe_key"] not in stepped
    ]}
