"""The copies of a registered user, against their sources.

    identity   -> notify       every registered user has a contact, and each of the user's wallets routes to it
    identity   -> compliance   every registered user was screened (compliance holds a subject), and every
                               review the api accepted was recorded (applied or ignored)
    compliance -> settlement   settle holds each user's latest decision (the result at the subject's sequence),
                               and holds it over the subject's wallets, no more and no fewer

A registration or review lost on its way (held as a dead letter, published while a subscription was
missing, a row deleted by hand or lost to a restore) fails quietly: notify records the user's margin
alerts as "no registered user owns the wallet", an unscreened user is never cleared, a reviewer's
dismissal never lifts the hold, and settle holds or releases escrows on a decision that is not the latest,
or on wallets that are not the user's: a lost wallet row leaves a REJECTED user's escrows unheld.

Each drift is repaired by replaying the source's own event with its id, from its outbox (identity's
UserRegistered, the api's review request, compliance's result at the subject's sequence), marked as a
replay: notify and settle run their handlers again (idempotent by user and by sequence); screen-compliance
is not replayable, so a registration or review it has already received is left for a person instead. An
event its outbox no longer holds (pruned after OUTBOX_RETENTION_DAYS) is left for a person too. A source
event still waiting in its outbox is in flight: the outbox check publishes it.

Each comparison is one statement that returns only what differs, at most MAX_DRIFTS_PER_KIND, in key
order; a million users cost the run no memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from shared import topics
from shared.db import Engine, sql, transaction
from shared.events import COMPLIANCE_SCREENED, compliance_result_id, user_registered_id
from shared.messaging import REJECTED
from shared.reconcile.drift import MAX_DRIFTS_PER_KIND, Drift

CONTACT_MISSING = "contact_missing"
SCREENING_MISSING = "screening_missing"
REVIEW_MISSING = "review_missing"
COMPLIANCE_STATUS_MISSING = "compliance_status_missing"
COMPLIANCE_STATUS_DIFFERS = "compliance_status_differs"
COMPLIANCE_WALLETS_DIFFER = "compliance_wallets_differ"
# Consumers are named after their functions (shared/topology.yaml).
NOTIFY_CONSUMER = "notify"
SCREENING_CONSUMER = "screen-compliance"

# Republishes outbox rows (topic, envelope, attributes) with their ids, marked as a replay.
Republish = Callable[[Sequence], None]

# Users registered before the grace period (:grace seconds) whose registration is not in flight.
_REGISTERED = (
    "SELECT u.user_id FROM identity.users u WHERE u.registered_at < now() - make_interval(secs => :grace) "
    "AND NOT EXISTS (SELECT 1 FROM identity.outbox o WHERE o.dedupe_key = :registered || u.user_id "
    "AND o.published_at IS NULL)")

# Registered users notify has no contact for, or with a wallet that does not route to them (notify keys
# wallets in lower case; addresses are ASCII, so lowered bytewise); with the wallets that do not, and what
# notify's inbox says of the registration. The wallets are compared first, over all users: joined to the
# registered users before that, the comparison took 2.5 s at a million users instead of 0.7 s.
_CONTACTS_DIFFER = sql(
    "WITH unrouted AS (SELECT w.user_id, w.wallet FROM identity.wallet_owners w WHERE NOT EXISTS "
    "(SELECT 1 FROM notify.contact_wallets n WHERE n.wallet = lower(w.wallet COLLATE \"C\") "
    "AND n.user_id = w.user_id)) "
    "SELECT d.user_id, d.has_contact, "
    "ARRAY(SELECT wallet FROM unrouted x WHERE x.user_id = d.user_id ORDER BY wallet) AS unrouted_wallets, "
    "i.outcome AS received, i.reason "
    f"FROM (SELECT r.user_id, c.user_id IS NOT NULL AS has_contact FROM ({_REGISTERED}) r "
    "LEFT JOIN notify.contacts c ON c.user_id = r.user_id "
    "WHERE c.user_id IS NULL OR r.user_id IN (SELECT user_id FROM unrouted) ORDER BY r.user_id LIMIT :limit) d "
    "LEFT JOIN notify.inbox i ON i.consumer = :notify AND i.dedupe_key = :registered || d.user_id "
    "ORDER BY d.user_id")

# Registered users compliance holds no subject for; with what screen-compliance's inbox says of their
# registration (NULL: never received).
_SCREENINGS_MISSING = sql(
    f"SELECT r.user_id, i.outcome AS received, i.reason FROM ({_REGISTERED}) r "
    "LEFT JOIN compliance.inbox i ON i.consumer = :consumer AND i.dedupe_key = :registered || r.user_id "
    "WHERE NOT EXISTS (SELECT 1 FROM compliance.subjects s WHERE s.user_id = r.user_id) "
    "ORDER BY r.user_id LIMIT :limit")

# Review requests the api published before the grace period that screen-compliance never recorded (applied
# or ignored); with what its inbox says of them. The request lives only in identity's outbox (the api keeps
# no other copy), so a lost one is found for OUTBOX_RETENTION_DAYS.
_REVIEWS_MISSING = sql(
    "SELECT o.event_id, o.topic, o.envelope, o.attributes, i.outcome AS received, i.reason FROM identity.outbox o "
    "LEFT JOIN compliance.inbox i ON i.consumer = :consumer AND i.dedupe_key = o.dedupe_key "
    "WHERE o.topic = :reviews AND o.published_at < now() - make_interval(secs => :grace) "
    "AND NOT EXISTS (SELECT 1 FROM compliance.reviews r WHERE r.review_id = o.envelope->'payload'->>'review_id') "
    "ORDER BY o.id LIMIT :limit")

# Users whose latest decision, last changed before the grace period and published, settle does not hold
# (missing, or another decision or sequence).
_STATUSES_DIFFER = sql(
    "SELECT s.user_id, s.decision, s.result_sequence, c.decision AS held_decision, c.sequence AS held_sequence "
    "FROM compliance.subjects s LEFT JOIN settlement.compliance_statuses c USING (user_id) "
    "WHERE s.updated_at < now() - make_interval(secs => :grace) "
    "AND (c.decision, c.sequence) IS DISTINCT FROM (s.decision, s.result_sequence) "
    "AND NOT EXISTS (SELECT 1 FROM compliance.outbox o WHERE o.dedupe_key = :screened || s.user_id || ':' "
    "|| s.result_sequence AND o.published_at IS NULL) "
    "ORDER BY s.user_id LIMIT :limit")

# A subject's wallets; none when the column holds anything but an array (a hand edit), so one such row is
# reported as a drift instead of failing the comparison of every user.
_SUBJECT_WALLETS = "CASE jsonb_typeof(s.wallet_addresses) WHEN 'array' THEN s.wallet_addresses ELSE '[]' END"

# Users whose latest decision settle holds (same decision and sequence, decided before the grace period) over
# other wallets than the subject's: a wallet missing from settle's copy, or one too many; with both sets.
# Every user's (user, wallet) rows are compared in one hash join, and only the few users that differ are then
# matched to their decisions: restricting both sides to the users whose decisions match first made the
# database build that set twice and set off JIT (0.86 s at 100k users, against 0.2 s; 2.2-2.6 s at 1M).
_WALLETS_DIFFER = sql(
    "WITH source AS (SELECT s.user_id, w.wallet FROM compliance.subjects s "
    f"CROSS JOIN LATERAL jsonb_array_elements_text({_SUBJECT_WALLETS}) AS w(wallet)), "
    "differing AS (SELECT DISTINCT coalesce(source.user_id, h.user_id) AS user_id FROM source "
    "FULL JOIN settlement.compliance_wallets h ON h.user_id = source.user_id AND h.wallet = source.wallet "
    "WHERE source.user_id IS NULL OR h.user_id IS NULL) "
    "SELECT s.user_id, s.result_sequence, jsonb_typeof(s.wallet_addresses) = 'array' AS readable, "
    f"ARRAY(SELECT w FROM jsonb_array_elements_text({_SUBJECT_WALLETS}) AS w ORDER BY w) AS wallets, "
    "ARRAY(SELECT h.wallet FROM settlement.compliance_wallets h WHERE h.user_id = s.user_id ORDER BY h.wallet) "
    "AS held_wallets FROM differing d JOIN compliance.subjects s USING (user_id) "
    "JOIN settlement.compliance_statuses c ON c.user_id = s.user_id AND c.sequence = s.result_sequence "
    "AND c.decision = s.decision WHERE s.updated_at < now() - make_interval(secs => :grace) "
    "ORDER BY s.user_id LIMIT :limit")

# A published event in a domain's outbox, by its id (the outbox's unique dedupe_key).
_PUBLISHED_EVENT = ("SELECT topic, envelope, attributes FROM {schema}.outbox WHERE dedupe_key = :dedupe_key "
                    "AND published_at IS NOT NULL")


def _parameters(grace: float) -> dict:
    # The ids' prefixes, for the database to build each user's ids (shared/events.py).
    return {"grace": grace, "limit": MAX_DRIFTS_PER_KIND, "registered": user_registered_id(""),
            "screened": f"{COMPLIANCE_SCREENED}:", "consumer": SCREENING_CONSUMER, "notify": NOTIFY_CONSUMER,
            "reviews": topics.COMPLIANCE_REVIEWS}


def registrations_vs_notify(engine: Engine, grace: float, checked: dict, republish: Republish) -> list[Drift]:
    """Every user registered before the grace period against notify's contact and the wallets routed to it."""
    parameters = _parameters(grace)
    with transaction(engine) as conn:
        checked["registered users"] = conn.execute(sql(f"SELECT count(*) FROM ({_REGISTERED}) r"),
                                                   parameters).scalar_one()
        rows = conn.execute(_CONTACTS_DIFFER, parameters).mappings().all()
    return [Drift(CONTACT_MISSING, row["user_id"], source={"registered": True},
                  replica={"contact": row["has_contact"], "unrouted_wallets": list(row["unrouted_wallets"]),
                           "registration_received": row["received"], "reason": row["reason"]},
                  # Refused by notify, a replay would be refused again.
                  repair=None if row["received"] == REJECTED else partial(
                      _replay, engine, "identity", user_registered_id(row["user_id"]), republish,
                      "replayed identity's UserRegistered with its id"))
            for row in rows]


def registrations_vs_compliance(engine: Engine, grace: float, checked: dict, republish: Republish) -> list[Drift]:
    """Every user registered before the grace period against compliance's subject (the user was screened)."""
    with transaction(engine) as conn:
        rows = conn.execute(_SCREENINGS_MISSING, _parameters(grace)).mappings().all()
    return [Drift(SCREENING_MISSING, row["user_id"], source={"registered": True},
                  replica={"subject": None, "registration_received": row["received"], "reason": row["reason"]},
                  # Received already, screen-compliance would drop the replay as a duplicate (not replayable).
                  repair=None if row["received"] else partial(
                      _replay, engine, "identity", user_registered_id(row["user_id"]), republish,
                      "replayed identity's UserRegistered with its id: screen-compliance never received it"))
            for row in rows]


def reviews_vs_compliance(engine: Engine, grace: float, checked: dict, republish: Republish) -> list[Drift]:
    """Every review request the api published against screen-compliance's record of it."""
    with transaction(engine) as conn:
        rows = conn.execute(_REVIEWS_MISSING, _parameters(grace)).mappings().all()
    return [Drift(REVIEW_MISSING, row["event_id"], source=_review_evidence(row["envelope"]),
                  replica={"review": None, "request_received": row["received"], "reason": row["reason"]},
                  repair=None if row["received"] else partial(_republish_row, row, republish))
            for row in rows]


def _review_evidence(envelope) -> dict:
    """Who and what the request was about; whatever a malformed row lacks is None (the run goes on)."""
    payload = envelope.get("payload") if isinstance(envelope, dict) else None
    payload = payload if isinstance(payload, dict) else {}
    return {name: payload.get(name) for name in ("user_id", "hit_id", "action")}


def compliance_vs_settlement(engine: Engine, grace: float, checked: dict, republish: Republish) -> list[Drift]:
    """Every user's latest compliance decision against the one settle holds (and holds escrows by)."""
    parameters = _parameters(grace)
    with transaction(engine) as conn:
        checked["compliance decisions"] = conn.execute(sql(
            "SELECT count(*) FROM compliance.subjects WHERE updated_at < now() - make_interval(secs => :grace)"),
            parameters).scalar_one()
        rows = conn.execute(_STATUSES_DIFFER, parameters).mappings().all()
    found = []
    for row in rows:
        source = {"decision": row["decision"], "sequence": row["result_sequence"]}
        replica = None if row["held_sequence"] is None else {"decision": row["held_decision"],
                                                             "sequence": row["held_sequence"]}
        repair = None
        if replica is None or replica["sequence"] <= source["sequence"]:
            # settle applies a result not older than the one it holds: a replay mends a missing, older or
            # altered one. One ahead of compliance's is left for a person.
            sequence = row["result_sequence"]
            repair = partial(_replay, engine, "compliance", compliance_result_id(row["user_id"], sequence), republish,
                             f"replayed compliance's result at sequence {sequence} with its id")
        found.append(Drift(COMPLIANCE_STATUS_MISSING if replica is None else COMPLIANCE_STATUS_DIFFERS,
                           row["user_id"], source, replica, repair))
    return found


def wallets_vs_settlement(engine: Engine, grace: float, checked: dict, republish: Republish) -> list[Drift]:
    """The wallets settle holds each user's latest decision over against the subject's (whose escrows it holds)."""
    with transaction(engine) as conn:
        rows = conn.execute(_WALLETS_DIFFER, _parameters(grace)).mappings().all()
    # settle applies a replay of the result it holds again, rewriting the wallets (shared/settlement/holds.py).
    # A subject whose wallets are unreadable is itself damaged: no replay mends that, so a person looks.
    return [Drift(COMPLIANCE_WALLETS_DIFFER, row["user_id"],
                  source={"wallets": list(row["wallets"]) if row["readable"] else None},
                  replica={"wallets": list(row["held_wallets"])},
                  repair=None if not row["readable"] else partial(
                      _replay, engine, "compliance", compliance_result_id(row["user_id"], row["result_sequence"]),
                      republish, f"replayed compliance's result at sequence {row['result_sequence']} with its id, "
                                 "for settle to hold it over the subject's wallets"))
            for row in rows]


# In the order a registration travels.
USER_COMPARISONS = (registrations_vs_notify, registrations_vs_compliance, reviews_vs_compliance,
                    compliance_vs_settlement, wallets_vs_settlement)


def _republish_row(row, republish: Republish) -> str:
    republish([row])
    return "replayed the api's review request with its id: screen-compliance never received it"


def _replay(engine: Engine, schema: str, event_id: str, republish: Republish, done: str) -> str | None:
    """Republish the event from `schema`'s outbox; None when the outbox no longer holds it (pruned)."""
    with transaction(engine) as conn:
        rows = conn.execute(sql(_PUBLISHED_EVENT.format(schema=schema)), {"dedupe_key": event_id}).mappings().all()
    if not rows:
        return None
    republish(rows)
    return done
