"""The catalogue of event types and the payload schema of each version.

A schema is a mapping of field name to kind. Kinds are deliberately few: JSON numbers cannot carry
uint256 safely, so on-chain amounts travel as decimal strings.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.errors import InvalidEvent

# Event types published on settlement.events.v1 by relay: one per escrow contract log.
ESCROW_CREATED = "EscrowCreated"
ESCROW_APPROVED = "EscrowApproved"
ESCROW_COMPLETED = "EscrowCompleted"
ESCROW_REFUNDED = "EscrowRefunded"
CHAIN_EVENT_TYPES = (ESCROW_CREATED, ESCROW_APPROVED, ESCROW_COMPLETED, ESCROW_REFUNDED)
# Published on users.registered.v1 by the api when a user registers.
USER_REGISTERED = "UserRegistered"
# Event types published on settlement.escrows.v1 by settle.
ESCROW_STATE_CHANGED = "EscrowStateChanged"
# Published on market.prices.v1 by fetch-price.
PRICE_UPDATED = "PriceUpdated"
# Published on risk.margin-events.v1 by assess-margin when a position changes tier.
MARGIN_TIER_CHANGED = "MarginTierChanged"
# Published on compliance.results.v1 by screen-compliance (and refresh-sanctions): a user's decision.
COMPLIANCE_SCREENED = "ComplianceScreened"
# Published on compliance.reviews.v1 by the api when a reviewer confirms or dismisses a REVIEW hit.
COMPLIANCE_REVIEW_REQUESTED = "ComplianceReviewRequested"

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")

_CHAIN_LOG_FIELDS = {
    "chain_id": "int",
    "contract": "address",
    "block_number": "int",
    "block_hash": "hash",
    "tx_hash": "hash",
    "log_index": "int",
    "removed": "bool",
}

_ESCROW_TERMS = {
    "escrow_id": "uint",
    "depositor": "address",
    "beneficiary": "address",
    "asset": "address",
    "amount": "uint",
    "obligation_usd": "decimal",
    "deadline": "int",
}

PAYLOAD_SCHEMAS: dict[tuple[str, int], dict[str, str]] = {
    (ESCROW_CREATED, 1): {**_CHAIN_LOG_FIELDS, **_ESCROW_TERMS},
    (ESCROW_APPROVED, 1): {**_CHAIN_LOG_FIELDS, "escrow_id": "uint", "approver": "address"},
    (ESCROW_COMPLETED, 1): {**_CHAIN_LOG_FIELDS, "escrow_id": "uint", "beneficiary": "address", "amount": "uint"},
    (ESCROW_REFUNDED, 1): {**_CHAIN_LOG_FIELDS, "escrow_id": "uint", "depositor": "address", "amount": "uint"},
    (USER_REGISTERED, 1): {
        "user_id": "str",
        "name": "str",
        "date_of_birth": "str",
        "country": "str",
        "email": "str",
        "phone": "str",
        "wallet_addresses": "list",
        "notification_channels": "list",
        "webhook_url": "str?",
        # type, issuing_country, expires_on, number_last4 (the number itself never leaves the API).
        "identity_document": "record?",
    },
    (ESCROW_STATE_CHANGED, 1): {
        "chain_id": "int",
        "contract": "address",
        **_ESCROW_TERMS,
        "state": "str",
        "previous_state": "str?",
        "sequence": "int",
        # True when the change undoes a log that a chain reorganisation orphaned.
        "reverted": "bool",
        "block_number": "int",
        "log_index": "int",
    },
    (PRICE_UPDATED, 1): {
        "asset": "str",
        "token": "address",
        "price": "decimal",
        # Per asset, one more for each published price: consumers ignore anything not newer.
        "sequence": "int",
        "observed_at": "str",
        "reason": "str",
        # Provenance: each fresh source's price, round (Chainlink), update time and age.
        "sources": "records",
    },
    (MARGIN_TIER_CHANGED, 1): {
        "chain_id": "int",
        "contract": "address",
        "escrow_id": "uint",
        "depositor": "address",
        "asset": "str",
        "previous_tier": "str",
        "tier": "str",
        "health_factor": "ratio",
        "price": "decimal",
        "collateral_amount": "decimal",
        "obligation_usd": "decimal",
        "price_event_id": "str",
        "snapshot_id": "int",
    },
    (COMPLIANCE_SCREENED, 1): {
        "user_id": "str",
        "decision": "str",
        "previous_decision": "str?",
        # Per user, one more for each result: consumers ignore a result not newer than theirs.
        "sequence": "int",
        "score": "int",
        "reasons": "list?",
        # For REJECTED: "retry" (the user can put it right, e.g. an expired document) or "final".
        "rejection": "str?",
        "screening_id": "int",
        "snapshot_id": "int",
        "trigger": "str",
        # The user's wallets: settle holds escrows that involve them while the decision is not APPROVED.
        "wallet_addresses": "list",
        "decided_at": "str",
    },
    (COMPLIANCE_REVIEW_REQUESTED, 1): {
        "review_id": "str",
        "user_id": "str",
        "hit_id": "int",
        "action": "str",
        "reviewer": "str",
        "note": "str?",
        "requested_at": "str",
    },
}


def _kind_problem(kind: str, value: Any) -> str | None:
    """Why `value` is not of `kind`, or None when it is."""
    if kind.endswith("?"):
        return None if value is None else _kind_problem(kind[:-1], value)
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "list":
        ok = isinstance(value, list) and all(isinstance(item, str) and item for item in value)
    elif kind == "record":
        ok = isinstance(value, dict)
    elif kind == "records":
        ok = isinstance(value, list) and all(isinstance(item, dict) for item in value)
    elif kind == "str":
        ok = isinstance(value, str) and value != ""
    elif kind == "address":
        ok = isinstance(value, str) and bool(_ADDRESS.match(value))
    elif kind == "hash":
        ok = isinstance(value, str) and bool(_HASH.match(value))
    elif kind == "uint":
        ok = isinstance(value, str) and value.isdigit()
    elif kind in ("decimal", "ratio"):
        # A ratio may also be "Infinity": a health factor with nothing owed.
        try:
            number = Decimal(value) if isinstance(value, str) else None
            ok = number is not None and (number.is_finite() or (kind == "ratio" and value == "Infinity"))
        except InvalidOperation:
            ok = False
    else:  # pragma: no cover - a schema typo, caught by the unit tests of every schema
        raise ValueError(f"unknown kind {kind}")
    return None if ok else f"expected {kind}, got {value!r}"


def validate_payload(event_type: str, version: int, payload: dict[str, Any], event_id: str) -> None:
    """Raise InvalidEvent unless the payload matches the schema registered for (type, version)."""
    schema = PAYLOAD_SCHEMAS.get((event_type, version))
    if schema is None:
        raise InvalidEvent(f"unknown event type {event_type} v{version}", event_id=event_id)
    problems = []
    for name, kind in schema.items():
        if name not in payload:
            if not kind.endswith("?"):
                problems.append(f"payload.{name} is missing")
            continue
        problem = _kind_problem(kind, payload[name])
        if problem:
            problems.append(f"payload.{name}: {problem}")
    if problems:
        raise InvalidEvent(f"{event_type} v{version}: " + "; ".join(problems), event_id=event_id)
