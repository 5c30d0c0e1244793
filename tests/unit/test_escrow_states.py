import pytest

from shared.errors import IllegalTransition
from shared.settlement.states import EscrowState, apply_transition, fits_between

S = EscrowState


@pytest.mark.parametrize(
    "current, target",
    [(None, S.CREATED), (S.CREATED, S.APPROVED), (S.CREATED, S.REFUNDED), (S.APPROVED, S.COMPLETED),
     (S.APPROVED, S.REFUNDED)],
)
def test_allowed_transitions(current, target):
    assert apply_transition(current, target, event_id="e") is target


@pytest.mark.parametrize(
    "current, target",
    [(None, S.APPROVED), (S.CREATED, S.COMPLETED), (S.COMPLETED, S.REFUNDED), (S.REFUNDED, S.APPROVED),
     (S.CREATED, S.CREATED)],
)
def test_illegal_transitions_are_permanent_errors(current, target):
    with pytest.raises(IllegalTransition) as raised:
        apply_transition(current, target, event_id="e1")
    assert raised.value.event_id == "e1"


@pytest.mark.parametrize("current, target, reachable", [
    (None, S.APPROVED, True),
    (S.CREATED, S.COMPLETED, True),
    (S.VOIDED, S.APPROVED, True),
    (S.COMPLETED, S.APPROVED, False),
    (S.REFUNDED, S.COMPLETED, False),
    (S.CREATED, S.CREATED, False),
])
def test_reachability_separates_waiting_from_illegal(current, target, reachable):
    from shared.settlement.states import is_reachable

    assert is_reachable(current, target) is reachable


@pytest.mark.parametrize("before, target, after, fits", [
    # created -> [approved] -> refunded: an approval pushed after the refund completes the history.
    (EscrowState.CREATED, EscrowState.APPROVED, EscrowState.REFUNDED, True),
    (EscrowState.CREATED, EscrowState.APPROVED, EscrowState.COMPLETED, True),
    (EscrowState.CREATED, EscrowState.APPROVED, None, True),
    # A completion cannot follow a creation, nor precede a refund: another fork's leftover.
    (EscrowState.CREATED, EscrowState.COMPLETED, EscrowState.REFUNDED, False),
    (EscrowState.APPROVED, EscrowState.COMPLETED, EscrowState.REFUNDED, False),
    # Nothing follows a final state.
    (EscrowState.REFUNDED, EscrowState.APPROVED, None, False),
    # A second approval between an approval and a completion.
    (EscrowState.APPROVED, EscrowState.APPROVED, EscrowState.COMPLETED, False),
], ids=["approval-before-refund", "approval-before-completion", "approval-last", "completion-after-creation",
        "completion-before-refund", "after-a-final-state", "second-approval"])
def test_a_late_step_fits_only_where_the_machine_allows_it_on_both_sides(before, target, after, fits):
    assert fits_between(before, target, after) is fits
