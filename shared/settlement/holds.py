"""Compliance holds: settle's record of each user's latest compliance decision and the wallets it covers.

An escrow is *held* while its depositor or its beneficiary is a wallet of a user whose latest decision
is not APPROVED (REVIEW or REJECTED). The hold is derived at read time from these two tables, so it
covers escrows created after the decision too, and lifts when a reviewer's dismissal approves the user.
The chain stays the truth: a held escrow's contract events are still recorded; the hold tells the
operators and the API not to treat its funds as clear.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from shared.envelope import Envelope
from shared.messaging.consumer import Outgoing
from shared.settlement.tables import compliance_statuses, compliance_wallets, escrows

log = logging.getLogger(__name__)
APPROVED = "APPROVED"


def apply_compliance_result(conn: Connection, result: Envelope) -> Outgoing:
    """Record a user's newer compliance decision and its wallets; an older one changes nothing. The one held
    again (only the reconciler's replay reaches here twice: the inbox drops a redelivery) rewrites its
    wallets, which mends a copy that lost or gained one."""
    payload = result.payload
    statement = insert(compliance_statuses).values(
        user_id=payload["user_id"], decision=payload["decision"], sequence=payload["sequence"],
        event_id=result.event_id, reasons=payload.get("reasons") or [],
        decided_at=datetime.fromisoformat(payload["decided_at"]), updated_at=func.now())
    applied = conn.execute(statement.on_conflict_do_update(
        index_elements=["user_id"],
        set_={name: statement.excluded[name] for name in ("decision", "sequence", "event_id", "reasons",
                                                          "decided_at", "updated_at")},
        where=compliance_statuses.c.sequence <= statement.excluded.sequence,
    ).returning(compliance_statuses.c.user_id)).first()
    if applied is None:
        log.info("compliance result older than the one recorded; ignored", extra={"event_id": result.event_id})
        return []
    wallets = sorted(set(payload["wallet_addresses"]))
    conn.execute(compliance_wallets.delete().where(compliance_wallets.c.user_id == payload["user_id"]))
    if wallets:
        conn.execute(compliance_wallets.insert(), [{"wallet": w, "user_id": payload["user_id"]} for w in wallets])
    involved = conn.execute(select(func.count()).select_from(escrows).where(
        or_(escrows.c.depositor.in_(wallets), escrows.c.beneficiary.in_(wallets)))).scalar_one() if wallets else 0
    log.info("escrows held for compliance" if payload["decision"] != APPROVED else "compliance hold lifted",
             extra={"user_id": payload["user_id"], "decision": payload["decision"], "escrows": involved,
                    "event_id": result.event_id})
    return []


def holds_on(conn: Connection, wallets: Iterable[str]) -> dict[str, dict]:
    """wallet -> the hold on it (decision, since, reasons), for the wallets that are held."""
    wanted = sorted(set(wallets))
    if not wanted:
        return {}
    rows = conn.execute(
        select(compliance_wallets.c.wallet, compliance_statuses.c.decision, compliance_statuses.c.decided_at,
               compliance_statuses.c.reasons)
        .join(compliance_statuses, compliance_statuses.c.user_id == compliance_wallets.c.user_id)
        .where(compliance_wallets.c.wallet.in_(wanted), compliance_statuses.c.decision != APPROVED)
    ).all()
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
