"""Applies settlement events (escrow contract logs) to the escrow records."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from shared.envelope import Envelope, derive_event_id
from shared.errors import InvalidEvent
from shared.events import ESCROW_CREATED, ESCROW_STATE_CHANGED
from shared.messaging.consumer import Outgoing
from shared.settlement.states import EscrowState, apply_transition
from shared.settlement.tables import escrows, transitions

STATE_CHANGES_TOPIC = "settlement.escrows.v1"


def apply_settlement_event(conn: Connection, envelope: Envelope) -> Outgoing:
    """Apply one event from settlement.events.v1 and return the state changes to publish."""
    if envelope.event_type == ESCROW_CREATED:
        return _record_created(conn, envelope)
    raise InvalidEvent(f"settle does not handle {envelope.event_type}", event_id=envelope.event_id)


def _record_created(conn: Connection, envelope: Envelope) -> Outgoing:
    p = envelope.payload
    state = apply_transition(None, EscrowState.CREATED, event_id=envelope.event_id)
    key = {"chain_id": p["chain_id"], "contract": p["contract"], "escrow_id": Decimal(p["escrow_id"])}
    inserted = conn.execute(
        insert(escrows)
        .values(
            **key,
            depositor=p["depositor"],
            beneficiary=p["beneficiary"],
            asset=p["asset"],
            amount=Decimal(p["amount"]),
            obligation_usd=Decimal(p["obligation_usd"]),
            deadline=datetime.fromtimestamp(p["deadline"], UTC),
            state=state.value,
            sequence=1,
            created_event_id=envelope.event_id,
            created_block=p["block_number"],
            created_tx=p["tx_hash"],
            created_at=datetime.fromisoformat(envelope.occurred_at),
        )
        .on_conflict_do_nothing(index_elements=list(key))
        .returning(escrows.c.escrow_id)
    ).first()
    if inserted is None:
        # The same escrow already exists under another event id: nothing new happened.
        return []
    conn.execute(
        insert(transitions).values(
            **key,
            sequence=1,
            from_state=None,
            to_state=state.value,
            event_id=envelope.event_id,
            occurred_at=datetime.fromisoformat(envelope.occurred_at),
        )
    )
    change = Envelope(
        event_id=derive_event_id(envelope.event_id, ESCROW_STATE_CHANGED),
        event_type=ESCROW_STATE_CHANGED,
        schema_version=1,
        occurred_at=envelope.occurred_at,
        correlation_id=envelope.correlation_id,
        causation_id=envelope.event_id,
        payload={
            "chain_id": p["chain_id"],
            "contract": p["contract"],
            "escrow_id": p["escrow_id"],
            "depositor": p["depositor"],
            "beneficiary": p["beneficiary"],
            "asset": p["asset"],
            "amount": p["amount"],
            "obligation_usd": p["obligation_usd"],
            "deadline": p["deadline"],
            "state": state.value,
            "previous_state": None,
            "sequence": 1,
        },
    )
    return [(STATE_CHANGES_TOPIC, change)]
