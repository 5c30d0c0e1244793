"""The escrow state machine (pure)."""

from __future__ import annotations

from enum import StrEnum

from shared.errors import IllegalTransition


class EscrowState(StrEnum):
    """Every state an escrow record can be in."""

    CREATED = "created"
    APPROVED = "approved"
    COMPLETED = "completed"
    REFUNDED = "refunded"


# state -> the states it may move to. `None` is "no record yet".
ALLOWED_TRANSITIONS: dict[EscrowState | None, frozenset[EscrowState]] = {
    None: frozenset({EscrowState.CREATED}),
    EscrowState.CREATED: frozenset({EscrowState.APPROVED, EscrowState.REFUNDED}),
    EscrowState.APPROVED: frozenset({EscrowState.COMPLETED, EscrowState.REFUNDED}),
    EscrowState.COMPLETED: frozenset(),
    EscrowState.REFUNDED: frozenset(),
}


def apply_transition(current: EscrowState | None, target: EscrowState, *, event_id: str) -> EscrowState:
    """The new state, or IllegalTransition when `current` may not move to `target`."""
    if target not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(
            f"escrow cannot go from {current.value if current else 'nothing'} to {target.value}",
            event_id=event_id,
        )
    return target
