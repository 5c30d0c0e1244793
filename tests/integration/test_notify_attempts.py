"""notify's attempts after the commit (`Notifier.send_pending`), on PostgreSQL, SendGrid unreachable.

The event is acknowledged only when none of its deliveries is left pending: counted again when an
attempt found its delivery held by another call, taken from the attempts' own statuses otherwise.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import sqlalchemy

from shared.envelope import Envelope
from shared.events import MARGIN_TIER_CHANGED
from shared.notify.service import DeliveriesPending, Notifier
from shared.notify.settings import NotifySettings
from tests.support.database import engine_as

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused


def _notifier(max_attempts: int) -> Notifier:
    return Notifier(NotifySettings(
        sendgrid_base_url=UNREACHABLE, sendgrid_api_key="SG.test", email_from="alerts@escrow.local",
        twilio_base_url=UNREACHABLE, twilio_account_sid="AC" + "0" * 32, twilio_auth_token="token",
        sms_from="+15005550006", twilio_status_callback_url=None, webhook_signing_key="key",
        webhook_allow_loopback=False, provider_timeout_seconds=2, max_attempts=max_attempts, attempts_per_call=1))


@pytest.fixture
def engine(database):
    with engine_as(database, "postgres") as engine:
        yield engine


def _pending_email(owner_engine) -> tuple[Envelope, int]:
    """A margin event and its one pending email delivery."""
    event_id = f"{MARGIN_TIER_CHANGED}:{uuid.uuid4().hex}"
    document = {"event_id": event_id, "event_type": MARGIN_TIER_CHANGED, "schema_version": 1,
                "occurred_at": "2026-01-01T00:00:00+00:00", "correlation_id": event_id, "causation_id": None,
                "payload": {"chain_id": 31337, "contract": "0x" + "ab" * 20, "escrow_id": "7", "asset": "ETH",
                            "depositor": "0x" + "cd" * 20, "previous_tier": "WARNING", "tier": "MARGIN_CALL",
                            "health_factor": "1.10000000", "price": "1500", "collateral_amount": "1",
                            "obligation_usd": "1125", "price_event_id": "PriceUpdated:ETH:1", "snapshot_id": None}}
    with owner_engine.begin() as conn:
        delivery_id = conn.execute(sqlalchemy.text(
            "INSERT INTO notify.deliveries (event_id, event_type, channel, user_id, recipient, status, "
            "correlation_id, payload) VALUES (:e, :t, 'email', 'user-1', 'user@example.org', 'pending', :e, "
            "CAST(:p AS jsonb)) RETURNING id"), {"e": event_id, "t": MARGIN_TIER_CHANGED,
                                                  "p": json.dumps(document)}).scalar_one()
    return Envelope.from_bytes(json.dumps(document).encode()), delivery_id


def _delivery(owner_engine, delivery_id: int) -> tuple[str, list[str]]:
    """The delivery's status and its attempts' outcomes."""
    with owner_engine.connect() as conn:
        status = conn.execute(sqlalchemy.text("SELECT status FROM notify.deliveries WHERE id = :d"),
                              {"d": delivery_id}).scalar_one()
        outcomes = conn.execute(sqlalchemy.text(
            "SELECT outcome FROM notify.delivery_attempts WHERE delivery_id = :d ORDER BY attempt"),
            {"d": delivery_id}).scalars().all()
    return status, list(outcomes)


def test_a_delivery_another_call_holds_keeps_the_event_unacknowledged(engine, owner_engine):
    envelope, delivery_id = _pending_email(owner_engine)
    with owner_engine.connect() as holder:
        with holder.begin():  # another instance attempting it right now
            holder.execute(sqlalchemy.text("SELECT 1 FROM notify.deliveries WHERE id = :d FOR UPDATE"),
                           {"d": delivery_id})
            with pytest.raises(DeliveriesPending, match="1 deliveries"):
                _notifier(max_attempts=3).send_pending(engine, envelope, time.monotonic() + 20)
    assert _delivery(owner_engine, delivery_id) == ("pending", [])


def test_a_transient_failure_keeps_the_event_unacknowledged_until_the_attempts_run_out(engine, owner_engine):
    envelope, delivery_id = _pending_email(owner_engine)
    with pytest.raises(DeliveriesPending, match="1 deliveries"):
        _notifier(max_attempts=2).send_pending(engine, envelope, time.monotonic() + 20)
    assert _delivery(owner_engine, delivery_id) == ("pending", ["transient"])
    # The last attempt fails it: nothing left to retry.
    _notifier(max_attempts=2).send_pending(engine, envelope, time.monotonic() + 20)
    assert _delivery(owner_engine, delivery_id) == ("failed", ["transient", "transient"])
