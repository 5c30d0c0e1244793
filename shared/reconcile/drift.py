"""A drift: one difference between a source and its copy, with the repair that is safe for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# Drifts of one kind a run reports (and repairs) at most; the next run finds the rest.
MAX_DRIFTS_PER_KIND = 1000


@dataclass
class Drift:
    """One difference between a source and its copy."""

    kind: str
    key: str
    source: dict | None
    replica: dict | None
    # Does the repair and says what it did; None: nothing is safe to do, a person decides.
    repair: Callable[[], str | None] | None = field(default=None, repr=False)
