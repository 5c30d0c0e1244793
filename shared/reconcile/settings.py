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
# Retention of what only grows (each run prunes; the database routines refuse values below their floors:
# 1 day of snapshots and of published outbox rows, 2 days of margin events and of price history, 8 days of
# inbox, of notifications and of rejected messages, 128 block hashes).
DEFAULT_SNAPSHOT_RETENTION_DAYS = 30
# Published margin events: the alert trail, and the price passes' part of a position's history, kept a
# quarter. At least 2 days: the reconciler compares the last day of them with what notify received.
DEFAULT_MARGIN_EVENT_RETENTION_DAYS = 90
# notify's deliveries (no longer pending), their attempts and the providers' callbacks: the other half of the
# alert trail. At least 8 days: a delivery row keeps a redelivered event from being sent again.
DEFAULT_NOTIFICATION_RETENTION_DAYS = 90
# fetch-price's observations and decisions, and the prices assess-margin applied with their sources. At least
# as long as the margin events and the snapshots, which name the price they were computed at.
DEFAULT_PRICE_HISTORY_RETENTION_DAYS = 90
# Each domain's refused messages, with their bodies and reasons.
DEFAULT_REJECTED_MESSAGE_RETENTION_DAYS = 90
DEFAULT_OUTBOX_RETENTION_DAYS = 7
# Longer than Pub/Sub keeps a message or a dead letter (7 days), so no redelivery finds its inbox row gone.
DEFAULT_INBOX_RETENTION_DAYS = 14
DEFAULT_RELAY_KEEP_BLOCKS = 10_000
# Rows one call of a routine deletes at most per table (margin events and notifications repeat their calls
# for up to retention.PRUNE_ROUNDS_SECONDS a run), so each transaction stays short.
DEFAULT_PRUNE_MAX_ROWS = 50_000
# Ceilings: the routines take days and rows as PostgreSQL integers, and one call's rows are one transaction. A
# value above them is a typo that would fail every run; it stops startup instead.
MAX_RETENTION_DAYS = 36_500
MAX_PRUNE_MAX_ROWS = 1_000_000
# Daily snapshot partitions kept ready ahead of today.
SNAPSHOT_PARTITIONS_AHEAD_DAYS = 7


@dataclass(frozen=True)
class ReconcileSettings:
    """How the reconciler paces itself."""

    grace_seconds: float
    redrive_max: int
    sweep_batch: int
    snapshot_retention_days: int = DEFAULT_SNAPSHOT_RETENTION_DAYS
    margin_event_retention_days: int = DEFAULT_MARGIN_EVENT_RETENTION_DAYS
    notification_retention_days: int = DEFAULT_NOTIFICATION_RETENTION_DAYS
    price_history_retention_days: int = DEFAULT_PRICE_HISTORY_RETENTION_DAYS
    rejected_message_retention_days: int = DEFAULT_REJECTED_MESSAGE_RETENTION_DAYS
    outbox_retention_days: int = DEFAULT_OUTBOX_RETENTION_DAYS
    inbox_retention_days: int = DEFAULT_INBOX_RETENTION_DAYS
    relay_keep_blocks: int = DEFAULT_RELAY_KEEP_BLOCKS
    prune_max_rows: int = DEFAULT_PRUNE_MAX_ROWS

    @classmethod
    def read(cls, reader: EnvReader) -> ReconcileSettings:
        """Read the reconciler's tuning (all optional)."""
        settings = cls(
            grace_seconds=reader.number("RECONCILE_GRACE_SECONDS", DEFAULT_RECONCILE_GRACE_SECONDS),
            redrive_max=reader.integer("REDRIVE_MAX", reader.optional("REDRIVE_MAX"), DEFAULT_REDRIVE_MAX),
            sweep_batch=reader.integer("RECONCILE_SWEEP_BATCH", reader.optional("RECONCILE_SWEEP_BATCH"),
                                       DEFAULT_RECONCILE_SWEEP_BATCH),
            snapshot_retention_days=_optional_int(reader, "SNAPSHOT_RETENTION_DAYS", DEFAULT_SNAPSHOT_RETENTION_DAYS),
            margin_event_retention_days=_optional_int(reader, "MARGIN_EVENT_RETENTION_DAYS",
                                                      DEFAULT_MARGIN_EVENT_RETENTION_DAYS),
            notification_retention_days=_optional_int(reader, "NOTIFICATION_RETENTION_DAYS",
                                                      DEFAULT_NOTIFICATION_RETENTION_DAYS),
            price_history_retention_days=_optional_int(reader, "PRICE_HISTORY_RETENTION_DAYS",
                                                       DEFAULT_PRICE_HISTORY_RETENTION_DAYS),
            rejected_message_retention_days=_optional_int(reader, "REJECTED_MESSAGE_RETENTION_DAYS",
                                                          DEFAULT_REJECTED_MESSAGE_RETENTION_DAYS),
            outbox_retention_days=_optional_int(reader, "OUTBOX_RETENTION_DAYS", DEFAULT_OUTBOX_RETENTION_DAYS),
            inbox_retention_days=_optional_int(reader, "INBOX_RETENTION_DAYS", DEFAULT_INBOX_RETENTION_DAYS),
            relay_keep_blocks=_optional_int(reader, "RELAY_KEEP_BLOCKS", DEFAULT_RELAY_KEEP_BLOCKS),
            prune_max_rows=_optional_int(reader, "PRUNE_MAX_ROWS", DEFAULT_PRUNE_MAX_ROWS),
        )
        if settings.redrive_max < 1 or settings.sweep_batch < 1:
            reader.malformed.append("REDRIVE_MAX and RECONCILE_SWEEP_BATCH must be at least 1")
        # The same floors as the database routines, so a bad value stops cold start, not every run.
        if (settings.snapshot_retention_days < 1 or settings.outbox_retention_days < 1
                or settings.margin_event_retention_days < 2 or settings.notification_retention_days < 8
                or settings.inbox_retention_days < 8 or settings.rejected_message_retention_days < 8
                or settings.relay_keep_blocks < 128 or settings.prune_max_rows < 1):
            reader.malformed.append("retention below its floor: SNAPSHOT_RETENTION_DAYS and OUTBOX_RETENTION_DAYS "
                                    ">= 1, MARGIN_EVENT_RETENTION_DAYS >= 2, NOTIFICATION_RETENTION_DAYS, "
                                    "INBOX_RETENTION_DAYS and REJECTED_MESSAGE_RETENTION_DAYS >= 8, "
                                    "RELAY_KEEP_BLOCKS >= 128, PRUNE_MAX_ROWS >= 1")
        retentions = {name: value for name, value in vars(settings).items() if name.endswith("_retention_days")}
        if max(retentions.values()) > MAX_RETENTION_DAYS or settings.prune_max_rows > MAX_PRUNE_MAX_ROWS:
            reader.malformed.append(f"retention above its ceiling: every *_RETENTION_DAYS <= {MAX_RETENTION_DAYS}, "
                                    f"PRUNE_MAX_ROWS <= {MAX_PRUNE_MAX_ROWS:,} (one call's transaction)")
        # (The database's own floor for the price history is 2 days, the margin events'.)
        if settings.price_history_retention_days < max(settings.margin_event_retention_days,
                                                       settings.snapshot_retention_days):
            reader.malformed.append("PRICE_HISTORY_RETENTION_DAYS must be at least MARGIN_EVENT_RETENTION_DAYS and "
                                    "SNAPSHOT_RETENTION_DAYS: margin events and snapshots name the price they were "
                                    "computed at")
        return settings


def _optional_int(reader: EnvReader, name: str, default: int) -> int:
    return reader.integer(name, reader.optional(name), default)
