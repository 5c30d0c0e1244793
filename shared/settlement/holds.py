"""Compliance holds: settle's record of each user's latest compliance decision and the wallets it covers.

An escrow is *held* while its depositor or its beneficiary is a wallet of a user whose latest decision
is not APPROVED (REVIEW or REJECTED). The hold is derived at read time from these two tables, so it
covers escrows created after the decision too, and lifts when a reviewer's dismissal approves the user.
The chain stays the truth: a held escrow's contract events are still recorded; the hold tells the
operators and the API not to treat its funds as clear.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime

from shared.db import Connection, sql
from shared.envelope import Envelope
from shared.messaging.consumer import Outgoing
from shared.settlement import SCHEMA

log = logging.getLogger(__name__)
APPROVED = "APPROVED"

# A user's decision, unless the one recorded is newer (a sequence not below it: the same one rewrites).
_RECORD_DECISION = sql(
    f"INSERT INTO {SCHEMA}.compliance_statuses AS s (user_id, decision, sequence, event_id, reasons, decided_at, "
    "updated_at) VALUES (:user_id, :decision, :sequence, :event_id, CAST(:reasons AS jsonb), :decided_at, now()) "
    "ON CONFLICT (user_id) DO UPDATE SET decision = EXCLUDED.decision, sequence = EXCLUDED.sequence, "
    "event_id = EXCLUDED.event_id, reasons = EXCLUDED.reasons, decided_at = EXCLUDED.decided_at, "
    "updated_at = EXCLUDED.updated_at WHERE s.sequence <= EXCLUDED.sequence RETURNING user_id")
_FORGET_WALLETS = sql(f"DELETE FROM {SCHEMA}.compliance_wallets WHERE user_id = :user_id")
_RECORD_WALLETS = sql(f"INSERT INTO {SCHEMA}.compliance_wallets (wallet, user_id) "
                      "SELECT unnest(CAST(:wallets AS text[])), :user_id")
_ESCROWS_INVOLVING = sql(f"SELECT count(*) FROM {SCHEMA}.escrows WHERE depositor = ANY(CAST(:wallets AS text[])) "
                         "OR beneficiary = ANY(CAST(:wallets AS text[]))")
_HOLDS_ON = sql(
    f"SELECT w.wallet, s.decision, s.decided_at, s.reasons FROM {SCHEMA}.compliance_wallets w "
    f"JOIN {SCHEMA}.compliance_statuses s ON s.user_id = w.user_id "
    "WHERE w.wallet = ANY(CAST(:wallets AS text[])) AND s.decision <> :approved")


def apply_compliance_result(conn: Connection, result: Envelope) -> Outgoing:
    """Record a user's newer compliance decision and its wallets; an older one changes nothing. The one held
    again (only the reconciler's replay reaches here twice: the inbox drops a redelivery) rewrites its
    wallets, which mends a copy that lost or gained one."""
    payload = result.payload
    applied = conn.execute(_RECORD_DECISION, {
        "user_id": payload["user_id"], "decision": payload["decision"], "sequence": payload["sequence"],
        "event_id": result.event_id, "reasons": json.dumps(payload.get("reasons") or []),
        "decided_at": datetime.fromisoformat(payload["decided_at"])}).first()
    if applied is None:
        log.info("compliance result older than the one recorded; ignored", extra={"event_id": result.event_id})
        return []
    wallets = sorted(set(payload["wallet_addresses"]))
    conn.execute(_FORGET_WALLETS, {"user_id": payload["user_id"]})
    if wallets:
        conn.execute(_RECORD_WALLETS, {"wallets": wallets, "user_id": payload["user_id"]})
    involved = conn.execute(_ESCROWS_INVOLVING, {"wallets": wallets}).scalar_one() if wallets else 0
    log.info("escrows held for compliance" if payload["decision"] != APPROVED else "compliance hold lifted",
             extra={"user_id": payload["user_id"], "decision": payload["decision"], "escrows": involved,
                    "event_id": result.event_id})
    return []


def holds_on(conn: Connection, wallets: Iterable[str]) -> dict[str, dict]:
    """wallet -> the hold on it (decision, since, reasons), for the wallets that are held."""
    wanted = sorted(set(wallets))
    if not wanted:
        return {}
    rows = conn.execute(_HOLDS_ON, {"wallets": wanted, "approved": APPROVED}).all()
    return {row.wallet: {"decision": row.decision, "since": row.decided_at.isoformat(), "reasons": row.reasons}
            for row in rows}


def escrow_hold(depositor: str, beneficiary: str, holds: dict[str, dict]) -> dict | None:
    """The compliance hold on an escrow (which parties are held, the worst decision), or None."""
    parties = {role: holds[wallet] for role, wallet in (("depositor", depositor), ("beneficiary", beneficiary))
               if wallet in holds}
    if not parties:
        return None
    decision = "REJECTED" if any(h["decision"] == "REJECTED" for h in parties.values()) else "REVIEW"
    return {"decision": decision, "held_parties": sorted(parties),
            "since": min(h["since"] for h in parties.values())}
