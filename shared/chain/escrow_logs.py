"""Decoding the escrow contract's logs into event payloads (pure: no I/O)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from eth_utils import to_checksum_address

from shared.events import ESCROW_CREATED

# The contract's fixed USD scale (Escrow.USD_DECIMALS), the same as Chainlink USD feeds.
USD_DECIMALS = 8


def chain_log_event_id(chain_id: int, tx_hash: str, log_index: int) -> str:
    """The deterministic id of one chain log: `chain_id:tx_hash:log_index`."""
    return f"{chain_id}:{tx_hash.lower()}:{log_index}"


def _hex(value: Any) -> str:
    text = value.hex() if isinstance(value, bytes | bytearray) else str(value)
    text = text.lower()
    return text if text.startswith("0x") else "0x" + text


def usd_from_units(units: int) -> str:
    """A fixed-point USD amount (8 decimals) as an exact decimal string."""
    return f"{Decimal(units).scaleb(-USD_DECIMALS):.{USD_DECIMALS}f}"


def chain_log_fields(chain_id: int, log: Any) -> dict[str, Any]:
    """The payload fields that locate a log on chain."""
    return {
        "chain_id": chain_id,
        "contract": to_checksum_address(log["address"]),
        "block_number": int(log["blockNumber"]),
        "block_hash": _hex(log["blockHash"]),
        "tx_hash": _hex(log["transactionHash"]),
        "log_index": int(log["logIndex"]),
        "removed": bool(log.get("removed", False)),
    }


def escrow_created_payload(chain_id: int, decoded: Any) -> dict[str, Any]:
    """The EscrowCreated v1 payload of a decoded log."""
    args = decoded["args"]
    return {
        **chain_log_fields(chain_id, decoded),
        "escrow_id": str(args["escrowId"]),
        "depositor": to_checksum_address(args["depositor"]),
        "beneficiary": to_checksum_address(args["beneficiary"]),
        "asset": to_checksum_address(args["asset"]),
        "amount": str(args["amount"]),
        "obligation_usd": usd_from_units(args["obligationUsd"]),
        "deadline": int(args["deadline"]),
    }


# Event name in the ABI -> (event type on the wire, payload builder).
DECODERS = {"EscrowCreated": (ESCROW_CREATED, escrow_created_payload)}
