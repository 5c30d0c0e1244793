"""Adaptive eth_getLogs range sizing (pure)."""

from __future__ import annotations

from dataclasses import dataclass

# Successful ranges in a row before the size doubles again. Growing after every success would
# make a provider at its limit refuse every other call.
GROW_AFTER_SUCCESSES = 4


@dataclass(frozen=True)
class RangeState:
    """The current range size and how many ranges in a row succeeded at it."""

    size: int
    successes: int

    def after_success(self, configured: int) -> RangeState:
        """The state after a range was accepted: double (up to `configured`) after a streak."""
        successes = self.successes + 1
        if successes >= GROW_AFTER_SUCCESSES and self.size < configured:
            return RangeState(size=min(configured, self.size * 2), successes=0)
        return RangeState(size=self.size, successes=successes)

    def after_refusal(self) -> RangeState:
        """The state after the provider refused the range: half the size, streak reset."""
        return RangeState(size=max(1, self.size // 2), successes=0)


def plan_range(next_block: int, target: int, state: RangeState) -> tuple[int, int] | None:
    """The block range to scan next, or None when `next_block` is past the confirmed target."""
    if next_block > target:
        return None
    return next_block, min(target, next_block + state.size - 1)
