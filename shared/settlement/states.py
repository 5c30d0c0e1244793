"""The escrow state machine (pure), and the id of the event each transition publishes."""

from __future__ import annotations

from enum import StrEnum

from shared.envelope import derive_event_id
from shared.errors import IllegalTransition
from shared.events import (
    ESCROW_APPROVED,
    ESCROW_COMPLETED,
    ESCROW_CREATED,
    ESCROW_REFUNDED,
    ESCROW_STATE_CHANGED,
)


class EscrowState(StrEnum):
    """Every state an escrow record can be in."""

    CREATED = "created"
    APPROVED = "approved"
    COMPLETED = "completed"
    REFUNDED = "refunded"
    # The escrow existed only on blocks a chain reorganisation orphaned.
    VOIDED = "voided"


# state -> the states it may move to. `None` is "no record yet".
ALLOWED_TRANSITIONS: dict[EscrowState | None, frozenset[EscrowState]] = {
    None: frozenset({EscrowState.CREATED}),
    EscrowState.CREATED: frozenset({EscrowState.APPROVED, EscrowState.REFUNDED}),
    EscrowState.APPROVED: frozenset({EscrowState.COMPLETED, EscrowState.REFUNDED}),
    EscrowState.COMPLETED: frozenset(),
    EscrowState.REFUNDED: frozenset(),
    EscrowState.VOIDED: frozenset({EscrowState.CREATED}),
}

# The state each contract event moves an escrow to.
TARGET_STATE = {
    ESCROW_CREATED: EscrowState.CREATED,
    ESCROW_APPROVED: EscrowState.APPROVED,
    ESCROW_COMPLETED: EscrowState.COMPLETED,
    ESCROW_REFUNDED: EscrowState.REFUNDED,
}


def apply_transition(current: EscrowState | None, target: EscrowState, *, event_id: str) -> EscrowState:
    """The new state, or IllegalTransition when `current` may not move to `target`."""
    if target not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(
            f"escrow cannot go from {current.value if current else 'nothing'} to {target.value}",
            event_id=event_id,
        )
    return target


def is_reachable(current: EscrowState | None, target: EscrowState) -> bool:
    """Whether `target` can still be reached from `current` through later transitions."""
    seen: set[EscrowState | None] = set()
    frontier = [current]
    while frontier:
        state = frontier.pop()
        for following in ALLOWED_TRANSITIONS[state]:
            if following == target:
                return True
            if following not in seen:
                seen.add(following)
                frontier.append(following)
    return False


def fits_between(before: EscrowState, target: EscrowState, after: EscrowState | None) -> bool:
    """Whether a step to `target` can stand between a recorded step to `before` and the next one, to `after`
    (None: `before` is the last): a late event that completes the history rather than contradicting it."""
    return target in ALLOWED_TRANSITIONS[before] and (after is None or after in ALLOWED_TRANSITIONS[target])


def state_change_id(cause_dedupe_key: str) -> str:
    """The id of the EscrowStateChanged event a transition published: derived from the dedupe key of the
    event that caused it (the transition's own `dedupe_key`), so it is also the outbox row's dedupe key."""
    return derive_event_id(cause_dedupe_key, ESCROW_STATE_CHANGED)
