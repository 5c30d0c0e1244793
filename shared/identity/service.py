"""Registering users: store the user and stage users.registered.v1 in one transaction."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from shared import topics
from shared.db import Connection, DatabaseError, constraint_violated, sql
from shared.envelope import Envelope, utc_iso
from shared.errors import Conflict, InvalidRequest
from shared.events import USER_REGISTERED, user_registered_id
from shared.identity import SCHEMA
from shared.identity.validation import Registration
from shared.messaging import outbox

_USER_BY_EMAIL = sql(f"SELECT user_id FROM {SCHEMA}.users WHERE lower(email) = :email")
_OWNED_WALLETS = sql(f"SELECT wallet FROM {SCHEMA}.wallet_owners WHERE wallet = ANY(CAST(:wallets AS text[])) "
                     "ORDER BY wallet")
_USER_COLUMNS = ("user_id", "name", "date_of_birth", "country", "email", "phone", "wallet_addresses",
                 "notification_channels", "webhook_url", "document_type", "document_issuing_country",
                 "document_expires_on", "document_number_last4")
_ADD_USER = sql(f"INSERT INTO {SCHEMA}.users ({', '.join(_USER_COLUMNS)}) VALUES ("
                + ", ".join(f"CAST(:{column} AS jsonb)" if column in ("wallet_addresses", "notification_channels")
                            else f":{column}" for column in _USER_COLUMNS) + ")")
_ADD_WALLETS = sql(f"INSERT INTO {SCHEMA}.wallet_owners (wallet, user_id) "
                   "SELECT unnest(CAST(:wallets AS text[])), :user_id")
_USER = sql(f"SELECT * FROM {SCHEMA}.users WHERE user_id = :user_id")


def user_document(row) -> dict:
    """A stored user as the API and the event show it."""
    return {
        "user_id": row["user_id"],
        "name": row["name"],
        "date_of_birth": row["date_of_birth"].isoformat(),
        "country": row["country"],
        "email": row["email"],
        "phone": row["phone"],
        "wallet_addresses": list(row["wallet_addresses"]),
        "notification_channels": list(row["notification_channels"]),
        "webhook_url": row["webhook_url"],
        "identity_document": {
            "type": row["document_type"],
            "issuing_country": row["document_issuing_country"],
            "expires_on": row["document_expires_on"].isoformat(),
            "number_last4": row["document_number_last4"],
        } if row["document_type"] else None,
    }


def _refuse_taken(conn: Connection, registration: Registration) -> None:
    """InvalidRequest if the email is registered; Conflict if a wallet belongs to another user."""
    taken = conn.execute(_USER_BY_EMAIL, {"email": registration.email.lower()}).first()
    if taken:
        raise InvalidRequest({"email": "is already registered"})
    owned: list[str] = list(conn.execute(_OWNED_WALLETS,
                                         {"wallets": list(registration.wallet_addresses)}).scalars())
    if owned:
        raise Conflict("wallet_addresses", f"{', '.join(owned)} already belongs to another user")


def register_user(conn: Connection, registration: Registration) -> dict:
    """Store the user, its wallets and its UserRegistered event.

    InvalidRequest if the email is taken; Conflict if a wallet is: a wallet belongs to one user, so
    alerts about it reach exactly one person.
    """
    _refuse_taken(conn, registration)
    user_id = uuid.uuid4().hex
    values = {
        "user_id": user_id,
        "name": registration.name,
        "date_of_birth": registration.date_of_birth,
        "country": registration.country,
        "email": registration.email,
        "phone": registration.phone,
        "wallet_addresses": list(registration.wallet_addresses),
        "notification_channels": [c.value for c in registration.notification_channels],
        "webhook_url": registration.webhook_url,
        "document_type": registration.document.type,
        "document_issuing_country": registration.document.issuing_country,
        "document_expires_on": registration.document.expires_on,
        "document_number_last4": registration.document.last4,
    }
    try:
        with conn.begin_nested():
            conn.execute(_ADD_USER, {**values, "wallet_addresses": json.dumps(values["wallet_addresses"]),
                                     "notification_channels": json.dumps(values["notification_channels"])})
            conn.execute(_ADD_WALLETS, {"wallets": list(registration.wallet_addresses), "user_id": user_id})
    except DatabaseError as exc:
        if not constraint_violated(exc):
            raise
        # A concurrent registration with the same email or wallet won the race.
        _refuse_taken(conn, registration)
        raise Conflict("registration", "a concurrent registration took its email or a wallet") from exc
    document = user_document(values)
    event_id = user_registered_id(user_id)
    outbox.enqueue(conn, SCHEMA, topics.USERS_REGISTERED, Envelope(
        event_id=event_id,
        event_type=USER_REGISTERED,
        schema_version=1,
        occurred_at=utc_iso(datetime.now(UTC)),
        correlation_id=event_id,
        causation_id=None,
        payload=document,
    ))
    return document


def get_user(conn: Connection, user_id: str) -> dict | None:
    """The user with this id, or None."""
    row = conn.execute(_USER, {"user_id": user_id}).mappings().first()
    return user_document(row) if row else None
