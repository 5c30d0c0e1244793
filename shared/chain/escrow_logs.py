"""Decoding the escrow contract's logs into event payloads (pure: no I/O)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from shared.addresses import checksum_address as to_checksum_address
from shared.chain.abi import EventLayout, event_layouts, load_artifact
from shared.events import ESCROW_APPROVED, ESCROW_COMPLETED, ESCROW_CREATED, ESCROW_REFUNDED

# The contract's fixed USD scale (Escrow.USD_DECIMALS), the same as Chainlink USD feeds.
USD_DECIMALS = 8


def chain_log_event_id(chain_id: int, tx_hash: str, log_index: int) -> str:
    """The deterministic id of one chain log: `chain_id:tx_hash:log_index`."""
    return f"{chain_id}:{tx_hash.lower()}:{log_index}"


def removal_event_id(event_id: str) -> str:
    """The id of the compensating event for a log that a reorganisation orphaned."""
    return f"{event_id}:removed"


def to_hex(value: Any) -> str:
    """Lower-case 0x-hex of bytes, HexBytes or a hex string."""
    if hasattr(value, "to_0x_hex"):
        return value.to_0x_hex().lower()
    text = value.hex() if isinstance(value, bytes | bytearray) else str(value)
    text = text.lower()
    return text if text.startswith("0x") else "0x" + text


def usd_from_units(units: int) -> str:
    """A fixed-point USD amount (8 decimals) as an exact decimal string."""
    return f"{Decimal(units).scaleb(-USD_DECIMALS):.{USD_DECIMALS}f}"


def quantity(value: Any) -> int:
    """A JSON-RPC quantity (0x-hex string, or an int already) as an int; ValueError for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    raise ValueError(f"{str(value)[:40]!r} is not a JSON-RPC quantity")


def chain_log_fields(chain_id: int, log: Any) -> dict[str, Any]:
    """The payload fields that locate a log (as `eth_getLogs` returns it) on chain."""
    return {
        "chain_id": chain_id,
        "contract": to_checksum_address(log["address"]),
        "block_number": quantity(log["blockNumber"]),
        "block_hash": to_hex(log["blockHash"]),
        "tx_hash": to_hex(log["transactionHash"]),
        "log_index": quantity(log["logIndex"]),
        "removed": bool(log.get("removed", False)),
    }


def chain_attributes(payload: dict[str, Any]) -> dict[str, str]:
    """Pub/Sub attributes that say where on chain a log sits."""
    return {
        "block_hash": payload["block_hash"],
        "block_number": str(payload["block_number"]),
        "removed": "true" if payload["removed"] else "false",
    }


def _created(args: Any) -> dict[str, Any]:
    return {
        "escrow_id": str(args["escrowId"]),
        "depositor": to_checksum_address(args["depositor"]),
        "beneficiary": to_checksum_address(args["beneficiary"]),
        "asset": to_checksum_address(args["asset"]),
        "amount": str(args["amount"]),
        "obligation_usd": usd_from_units(args["obligationUsd"]),
        "deadline": int(args["deadline"]),
    }


def _approved(args: Any) -> dict[str, Any]:
    return {"escrow_id": str(args["escrowId"]), "approver": to_checksum_address(args["approver"])}


def _completed(args: Any) -> dict[str, Any]:
    return {
        "escrow_id": str(args["escrowId"]),
        "beneficiary": to_checksum_address(args["beneficiary"]),
        "amount": str(args["amount"]),
    }


def _refunded(args: Any) -> dict[str, Any]:
    return {
        "escrow_id": str(args["escrowId"]),
        "depositor": to_checksum_address(args["depositor"]),
        "amount": str(args["amount"]),
    }


# ABI event name -> (event type on the wire, builder of the event-specific payload fields).
DECODERS: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "EscrowCreated": (ESCROW_CREATED, _created),
    "EscrowApproved": (ESCROW_APPROVED, _approved),
    "EscrowCompleted": (ESCROW_COMPLETED, _completed),
    "EscrowRefunded": (ESCROW_REFUNDED, _refunded),
}


@functools.cache
def escrow_events() -> dict[str, tuple[EventLayout, str, Callable[[Any], dict[str, Any]]]]:
    """topic0 -> (layout, wire event type, payload builder) for the escrow events relay forwards,
    from the compiled contract's ABI (the one home of their signatures)."""
    layouts = {layout.name: layout for layout in event_layouts(load_artifact("Escrow")["abi"]).values()}
    return {layouts[name].topic: (layouts[name], event_type, build) for name, (event_type, build) in DECODERS.items()}


def log_payload(chain_id: int, raw: Any, layout: EventLayout,
                build: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The full payload of one raw log: where it is on chain, and what it says (AbiMismatch, a
    ValueError, when the log does not fit the event's layout)."""
    return {**chain_log_fields(chain_id, raw), **build(layout.decode(raw["topics"], raw["data"]))}
