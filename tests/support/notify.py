"""Reads what notify recorded, and what the local vendors received (e2e tests of alerts)."""

from __future__ import annotations

import sqlalchemy

from shared.stack.chain_driver import wait_for
from shared.stack.vendor_server import VendorControl


def deliveries(engine, event_id: str) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT * FROM notify.deliveries WHERE event_id = :e"),
                            {"e": event_id}).mappings().all()
    return {row["channel"]: row for row in rows}


def attempts(engine, delivery_id: int) -> list:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(
            "SELECT outcome, status_code FROM notify.delivery_attempts WHERE delivery_id = :d ORDER BY attempt"),
            {"d": delivery_id}).all()


def settled(engine, event_id: str, channels: int):
    def done():
        rows = deliveries(engine, event_id)
        return rows if len(rows) == channels and all(r["status"] != "pending" for r in rows.values()) else None
    return wait_for(done, f"deliveries of {event_id} to settle", timeout=60)


def final(engine, event_id: str, expected: dict):
    """Wait until the event's deliveries reach `expected` (channel -> status), e.g. after callbacks."""
    def reached():
        rows = deliveries(engine, event_id)
        return rows if {c: r["status"] for c, r in rows.items()} == expected else None
    try:
        return wait_for(reached, f"deliveries of {event_id} to reach {expected}", timeout=60)
    except TimeoutError:
        raise AssertionError({c: (r["status"], r["reason"]) for c, r in deliveries(engine, event_id).items()}) \
            from None


def sent_to(vendor: VendorControl, key: str, value: str) -> list:
    if key == "email":
        return [m for m in vendor.messages() if m["mail"]["personalizations"][0]["to"][0]["email"] == value]
    return [m for m in vendor.messages() if m["form"]["To"] == value]


def contact_email(engine, user_id: str):
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text("SELECT email FROM notify.contacts WHERE user_id = :u"),
                            {"u": user_id}).scalar()
