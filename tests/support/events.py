"""Real envelopes for tests, built from the golden JSON in tests/events/."""

from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path

from shared.envelope import Envelope
from shared.settlement.states import state_change_id as settle_state_change_id

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"


def golden(name: str) -> dict:
    """A fresh copy of tests/events/<name>.json."""
    return copy.deepcopy(json.loads((EVENTS_DIR / f"{name}.json").read_text()))


def unique_escrow_created(contract: str | None = None) -> dict:
    """The golden EscrowCreated with a never-seen tx hash, event id and escrow id."""
    document = golden("escrow_created")
    tx_hash = "0x" + secrets.token_hex(32)
    event_id = f"31337:{tx_hash}:0"
    document.update(event_id=event_id, correlation_id=event_id)
    document["payload"].update(tx_hash=tx_hash, escrow_id=str(secrets.randbelow(10**12) + 10**6))
    if contract:
        document["payload"]["contract"] = contract
    return document


def body(document: dict) -> bytes:
    """The message body of an envelope document."""
    return json.dumps(document).encode()


def state_change_id(document: dict) -> str:
    """The id settle gives the EscrowStateChanged caused by this chain event."""
    return settle_state_change_id(Envelope.from_json(document).dedupe_key)


def chain_event(event_type: str, escrow_id: str, block_number: int, log_index: int = 0,
                contract: str | None = None, **fields) -> dict:
    """A chain event for one escrow at a given position, built from the golden EscrowCreated."""
    created = unique_escrow_created(contract)
    document = golden("escrow_created")
    tx_hash = "0x" + secrets.token_hex(32)
    event_id = f"31337:{tx_hash}:{log_index}"
    payload = {key: created["payload"][key] for key in
               ("chain_id", "contract", "block_hash", "removed")}
    payload.update(block_number=block_number, log_index=log_index, tx_hash=tx_hash, escrow_id=escrow_id)
    if event_type == "EscrowCreated":
        payload.update({k: created["payload"][k] for k in
                        ("depositor", "beneficiary", "asset", "amount", "obligation_usd", "deadline")})
    elif event_type == "EscrowApproved":
        payload["approver"] = created["payload"]["beneficiary"]
    elif event_type == "EscrowCompleted":
        payload.update(beneficiary=created["payload"]["beneficiary"], amount=created["payload"]["amount"])
    else:
        payload.update(depositor=created["payload"]["depositor"], amount=created["payload"]["amount"])
    payload.update(fields)
    document.update(event_id=event_id, correlation_id=event_id, event_type=event_type, payload=payload)
    return document


def new_escrow_id() -> str:
    """An escrow id no other test uses."""
    return str(secrets.randbelow(10**15) + 10**12)
