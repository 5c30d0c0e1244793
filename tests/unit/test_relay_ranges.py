from shared.chain.reader import is_range_error
from shared.relay.ranges import GROW_AFTER_SUCCESSES, RangeState, plan_range
from shared.relay.service import calculate_target_block


def test_refusal_halves_down_to_one_block():
    state = RangeState(size=5, successes=3)
    assert state.after_refusal() == RangeState(size=2, successes=0)
    assert RangeState(size=1, successes=0).after_refusal().size == 1


def test_size_doubles_only_after_a_streak_and_never_past_the_configured_size():
    state = RangeState(size=4, successes=0)
    for _ in range(GROW_AFTER_SUCCESSES - 1):
        state = state.after_success(configured=10)
        assert state.size == 4
    state = state.after_success(configured=10)
    assert state == RangeState(size=8, successes=0)
    for _ in range(GROW_AFTER_SUCCESSES):
        state = state.after_success(configured=10)
    assert state.size == 10


def test_plan_range_stops_at_the_confirmed_target():
    assert plan_range(101, 100, RangeState(50, 0)) is None
    assert plan_range(90, 100, RangeState(50, 0)) == (90, 100)
    assert plan_range(1, 100, RangeState(50, 0)) == (1, 50)


def test_target_block_leaves_the_confirmation_depth():
    assert calculate_target_block(head=120, confirmations=12) == 108


class _ProviderError(Exception):
    pass


def test_provider_range_errors_are_recognised_by_code_or_wording():
    assert is_range_error(_ProviderError({"code": -32005, "message": "query returned more than 10000 results"}))
    assert is_range_error(_ProviderError({"code": -32000, "message": "block range is too wide"}))
    assert is_range_error(_ProviderError(
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range"))
    assert not is_range_error(_ProviderError({"code": -32000, "message": "header not found"}))
