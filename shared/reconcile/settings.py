"""The reconciler's settings: how it paces itself."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import EnvReader

# The reconciler leaves alone what changed more recently than this: it may still be in flight.
DEFAULT_RECONCILE_GRACE_SECONDS = 120.0
# A dead letter is moved back to its topic at most this many times; then it is held for a person.
DEFAULT_REDRIVE_MAX = 3
# Escrows the rolling chain sweep reads per run (batched eth_call), besides the recently changed ones.
DEFAULT_RECONCILE_SWEEP_BATCH = 2000


@dataclass(frozen=True)
class ReconcileSettings:
    """How the reconciler paces itself."""

    grace_seconds: float
    redrive_max: int
    sweep_batch: int

    @classmethod
    def read(cls, reader: EnvReader) -> ReconcileSettings:
        """Read the reconciler's tuning (all optional)."""
        settings = cls(
            grace_seconds=reader.number("RECONCILE_GRACE_SECONDS", DEFAULT_RECONCILE_GRACE_SECONDS),
            redrive_max=reader.integer("REDRIVE_MAX", reader.optional("REDRIVE_MAX"), DEFAULT_REDRIVE_MAX),
            sweep_batch=reader.integer("RECONCILE_SWEEP_BATCH", reader.optional("RECONCILE_SWEEP_BATCH"),
                                       DEFAULT_RECONCILE_SWEEP_BATCH),
        )
        if settings.redrive_max < 1 or settings.sweep_batch < 1:
            reader.malformed.append("REDRIVE_MAX and RECONCILE_SWEEP_BATCH must be at least 1")
        return settings
