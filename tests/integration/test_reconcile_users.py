"""The reconciler's comparisons of each registered user's copies, on PostgreSQL, as fn_reconcile.

identity -> notify (contact and routed wallets), identity -> compliance (a subject), compliance -> settle
(the latest decision). Each test user is seeded consistent in every domain, as the pipeline leaves it, then
one row per way a copy can drift is applied to a user of its own, next to a consistent user and users whose
source is still in flight. Each row checks the drift found (kind and evidence) and what its repair does:
the rows it republishes (the source's own outbox row, by its id), or that it leaves the drift for a person.
The repair's publish itself is proven on the stack in tests/e2e/test_reconcile.py.
"""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy

from shared.db import sql
from shared.events import compliance_result_id, user_registered_id
from shared.reconcile.users import (
    COMPLIANCE_STATUS_DIFFERS,
    COMPLIANCE_STATUS_MISSING,
    COMPLIANCE_WALLETS_DIFFER,
    CONTACT_MISSING,
    REVIEW_MISSING,
    SCREENING_MISSING,
    USER_COMPARISONS,
    reviews_vs_compliance,
)
from tests.support.database import engine_as

GRACE_SECONDS = 60


def _execute(conn, sql: str, **params) -> None:
    conn.execute(sqlalchemy.text(sql), params)


def _seed(conn, user_id: str, *, registered_ago: int = 3600, decided_ago: int = 3600, sequence: int = 2) -> str:
    """A user consistent in every domain, its events published; returns its wallet."""
    wallet = "0x" + uuid.uuid4().hex[:8].upper() + "a" * 32
    registered = user_registered_id(user_id)
    result = compliance_result_id(user_id, sequence)
    p = {"u": user_id, "w": wallet, "ago": registered_ago, "decided_ago": decided_ago, "seq": sequence,
         "registered": registered, "result": result, "email": f"{user_id}@example.org",
         "envelope": json.dumps({"event_id": registered, "event_type": "UserRegistered", "payload": {}}),
         "result_envelope": json.dumps({"event_id": result, "event_type": "ComplianceScreened", "payload": {}})}
    _execute(conn, "INSERT INTO identity.users (user_id, name, date_of_birth, country, email, phone, wallet_addresses, "
                   "notification_channels, registered_at) VALUES (:u, 'Test User', '1980-01-01', 'NL', :email, "
                   "'+31201234567', jsonb_build_array(CAST(:w AS text)), '[\"email\"]', "
                   "now() - make_interval(secs => :ago))", **p)
    _execute(conn, "INSERT INTO identity.wallet_owners (wallet, user_id) VALUES (:w, :u)", **p)
    _execute(conn, "INSERT INTO identity.outbox (dedupe_key, event_id, topic, envelope, attributes, created_at, "
                   "published_at, message_id) VALUES (:registered, :registered, 'users.registered.v1', "
                   "CAST(:envelope AS jsonb), '{}', now() - make_interval(secs => :ago), "
                   "now() - make_interval(secs => :ago), '1')", **p)
    _execute(conn, "INSERT INTO notify.contacts (user_id, email, phone, channels, registered_event_id) "
                   "VALUES (:u, :email, '+31201234567', '[\"email\"]', :registered)", **p)
    _execute(conn, "INSERT INTO notify.contact_wallets (wallet, user_id) VALUES (lower(:w), :u)", **p)
    _execute(conn, "INSERT INTO notify.inbox (consumer, dedupe_key, event_id, event_type, outcome) "
                   "VALUES ('notify', :registered, :registered, 'UserRegistered', 'applied')", **p)
    _execute(conn, "INSERT INTO compliance.inbox (consumer, dedupe_key, event_id, event_type, outcome) "
                   "VALUES ('screen-compliance', :registered, :registered, 'UserRegistered', 'applied')", **p)
    _execute(conn, "INSERT INTO compliance.subjects (user_id, registered_event_id, correlation_id, wallet_addresses, "
                   "decision, latest_screening_id, last_snapshot_id, result_sequence, updated_at) VALUES (:u, "
                   ":registered, :registered, jsonb_build_array(CAST(:w AS text)), 'APPROVED', 1, 1, :seq, "
                   "now() - make_interval(secs => :decided_ago))", **p)
    _execute(conn, "INSERT INTO compliance.outbox (dedupe_key, event_id, topic, envelope, attributes, created_at, "
                   "published_at, message_id) VALUES (:result, :result, 'compliance.results.v1', "
                   "CAST(:result_envelope AS jsonb), '{}', now(), now(), '2')", **p)
    _execute(conn, "INSERT INTO settlement.compliance_statuses (user_id, decision, sequence, event_id, reasons, "
                   "decided_at) VALUES (:u, 'APPROVED', :seq, :result, '[]', now())", **p)
    _execute(conn, "INSERT INTO settlement.compliance_wallets (wallet, user_id) VALUES (:w, :u)", **p)
    return wallet


# How a user's copies drift: (the change, with :u the user, :w its wallet, :registered and :result the ids
# of its registration and latest result), the kind found, the evidence in
# the drift's replica, and whether a repair replays an event (its id; None: left for a person).
DRIFTS = {
    "contact deleted": (
        "DELETE FROM notify.contact_wallets WHERE user_id = :u; DELETE FROM notify.contacts WHERE user_id = :u",
        CONTACT_MISSING, {"contact": False, "registration_received": "applied"}, "registered"),
    "registration refused by notify": (
        "DELETE FROM notify.contact_wallets WHERE user_id = :u; DELETE FROM notify.contacts WHERE user_id = :u; "
        "UPDATE notify.inbox SET outcome = 'rejected', reason = 'test' WHERE consumer = 'notify' "
        "AND dedupe_key = :registered",
        CONTACT_MISSING, {"contact": False, "registration_received": "rejected", "reason": "test"}, None),
    "a wallet no longer routed": (
        "DELETE FROM notify.contact_wallets WHERE user_id = :u", CONTACT_MISSING, {"contact": True}, "registered"),
    "a wallet routed to someone else": (
        "UPDATE notify.contact_wallets SET user_id = 'someone-else' WHERE user_id = :u",
        CONTACT_MISSING, {"contact": True}, "registered"),
    "contact deleted, registration pruned": (
        "DELETE FROM notify.contact_wallets WHERE user_id = :u; DELETE FROM notify.contacts WHERE user_id = :u; "
        "DELETE FROM identity.outbox WHERE dedupe_key = :registered",
        CONTACT_MISSING, {"contact": False}, None),
    "never screened": (
        "DELETE FROM compliance.subjects WHERE user_id = :u; DELETE FROM compliance.inbox WHERE "
        "consumer = 'screen-compliance' AND dedupe_key = :registered",
        SCREENING_MISSING, {"registration_received": None}, "registered"),
    "registration refused by screen-compliance": (
        "DELETE FROM compliance.subjects WHERE user_id = :u; UPDATE compliance.inbox SET outcome = 'rejected', "
        "reason = 'test' WHERE consumer = 'screen-compliance' AND dedupe_key = :registered",
        SCREENING_MISSING, {"registration_received": "rejected", "reason": "test"}, None),
    "settle's decision deleted": (
        "DELETE FROM settlement.compliance_statuses WHERE user_id = :u", COMPLIANCE_STATUS_MISSING, None, "result"),
    "settle's decision one behind": (
        "UPDATE settlement.compliance_statuses SET sequence = 1, decision = 'REVIEW' WHERE user_id = :u",
        COMPLIANCE_STATUS_DIFFERS, {"decision": "REVIEW", "sequence": 1}, "result"),
    "settle's decision differs at the same sequence": (
        "UPDATE settlement.compliance_statuses SET decision = 'REJECTED' WHERE user_id = :u",
        COMPLIANCE_STATUS_DIFFERS, {"decision": "REJECTED", "sequence": 2}, "result"),
    "settle's decision ahead of compliance's": (
        "UPDATE settlement.compliance_statuses SET sequence = 3 WHERE user_id = :u",
        COMPLIANCE_STATUS_DIFFERS, {"decision": "APPROVED", "sequence": 3}, None),
    "settle lost a wallet": (
        "DELETE FROM settlement.compliance_wallets WHERE user_id = :u",
        COMPLIANCE_WALLETS_DIFFER, {"wallets": []}, "result"),
    "settle holds an extra wallet": (
        "INSERT INTO settlement.compliance_wallets (wallet, user_id) VALUES ('0x' || repeat('E', 40), :u)",
        COMPLIANCE_WALLETS_DIFFER, {"wallets": [":w", "0x" + "E" * 40]}, "result"),
    "the subject's wallets unreadable (a hand edit)": (
        "UPDATE compliance.subjects SET wallet_addresses = '{\"0x\": 1}' WHERE user_id = :u",
        COMPLIANCE_WALLETS_DIFFER, {"wallets": [":w"]}, None),
    "settle lost a wallet, result pruned": (
        "DELETE FROM settlement.compliance_wallets WHERE user_id = :u; "
        "DELETE FROM compliance.outbox WHERE dedupe_key = :result",
        COMPLIANCE_WALLETS_DIFFER, {"wallets": []}, None),
    "settle's decision deleted, result pruned": (
        "DELETE FROM settlement.compliance_statuses WHERE user_id = :u; "
        "DELETE FROM compliance.outbox WHERE dedupe_key = :result",
        COMPLIANCE_STATUS_MISSING, None, None),
}

# Drifts whose source is still in flight: none is reported.
IN_FLIGHT = {
    "registered within the grace period": (
        "UPDATE identity.users SET registered_at = now() WHERE user_id = :u; "
        "DELETE FROM notify.contacts WHERE user_id = :u; DELETE FROM compliance.subjects WHERE user_id = :u"),
    "registration still in identity's outbox": (
        "UPDATE identity.outbox SET published_at = NULL WHERE dedupe_key = :registered; "
        "DELETE FROM notify.contacts WHERE user_id = :u; DELETE FROM compliance.subjects WHERE user_id = :u; "
        "DELETE FROM compliance.inbox WHERE dedupe_key = :registered"),
    "decided within the grace period": (
        "UPDATE compliance.subjects SET updated_at = now() WHERE user_id = :u; "
        "DELETE FROM settlement.compliance_statuses WHERE user_id = :u"),
    "result still in compliance's outbox": (
        "UPDATE compliance.outbox SET published_at = NULL WHERE dedupe_key = :result; "
        "DELETE FROM settlement.compliance_statuses WHERE user_id = :u"),
}


@pytest.fixture
def users(owner_engine):
    """Seeds users of the test's own (ids sharing a prefix); their rows in every domain removed afterwards."""
    prefix = f"0recon{uuid.uuid4().hex[:8]}"
    seeded = {}

    def seed(name: str, change: str | None) -> str:
        user_id = f"{prefix}-{len(seeded)}"
        with owner_engine.begin() as conn:
            wallet = _seed(conn, user_id)
            for statement in filter(None, (change or "").split("; ")):
                _execute(conn, statement, u=user_id, w=wallet, registered=user_registered_id(user_id),
                         result=compliance_result_id(user_id, 2))
        seeded[name] = user_id
        return user_id

    yield prefix, seed
    with owner_engine.begin() as conn:
        for table, column in [("notify.contact_wallets", "user_id"), ("notify.contacts", "user_id"),
                              ("notify.inbox", "dedupe_key"),
                              ("compliance.inbox", "dedupe_key"), ("compliance.outbox", "dedupe_key"),
                              ("compliance.subjects", "user_id"), ("settlement.compliance_statuses", "user_id"),
                              ("settlement.compliance_wallets", "user_id"),
                              ("identity.outbox", "dedupe_key"), ("identity.wallet_owners", "user_id"),
                              ("identity.users", "user_id")]:
            _execute(conn, f"DELETE FROM {table} WHERE {column} LIKE :p", p=f"%{prefix}%")
        _execute(conn, "DELETE FROM notify.contact_wallets WHERE user_id = 'someone-else'")


def _wallet_of(database, user_id: str, *, held: bool = False) -> str | None:
    """The user's one wallet: as identity registered it (`held`), or as the subject lists it (None if it
    lists it unreadably)."""
    query = ("SELECT wallet FROM identity.wallet_owners WHERE user_id = :u" if held else
             "SELECT CASE jsonb_typeof(wallet_addresses) WHEN 'array' THEN wallet_addresses->>0 END "
             "FROM compliance.subjects WHERE user_id = :u")
    with engine_as(database, "fn_reconcile") as engine, engine.connect() as conn:
        return conn.execute(sql(query), {"u": user_id}).scalar_one()


def _found(database, prefix: str) -> tuple[dict, dict, list]:
    """(kind, user id) -> drift for the test's users, what the run checked, and what repairs republished."""
    republished: list = []
    checked: dict = {}
    with engine_as(database, "fn_reconcile") as engine:
        found = [drift for compare in USER_COMPARISONS
                 for drift in compare(engine, GRACE_SECONDS, checked, republished.extend)]
    return {(d.kind, d.key): d for d in found if d.key.startswith(prefix)}, checked, republished


def test_each_drifting_copy_is_found_with_its_evidence_and_repaired_from_its_source(database, users):
    prefix, seed = users
    consistent = seed("consistent", None)
    drifting = {name: seed(name, change) for name, (change, *_rest) in DRIFTS.items()}
    found, checked, republished = _found(database, prefix)

    assert not [key for key in found if key[1] == consistent], "a consistent user drifts in no copy"
    assert checked["registered users"] >= len(DRIFTS) + 1 and checked["compliance decisions"] >= 1
    expected = {(kind, drifting[name]) for name, (_change, kind, _evidence, _replay) in DRIFTS.items()}
    assert set(found) == expected
    for name, (_change, kind, evidence, replay) in DRIFTS.items():
        drift = found[(kind, drifting[name])]
        if evidence is None:
            assert drift.replica is None, name
        elif kind == COMPLIANCE_WALLETS_DIFFER:  # ":w" stands for the user's own wallet
            wallet = _wallet_of(database, drifting[name])
            assert drift.source == {"wallets": [wallet] if wallet else None}, name
            assert drift.replica == {"wallets": sorted(_wallet_of(database, drifting[name], held=True) if w == ":w"
                                                       else w for w in evidence["wallets"])}, name
        else:
            assert {k: drift.replica[k] for k in evidence} == evidence, name
        if kind == CONTACT_MISSING and evidence["contact"]:
            assert drift.replica["unrouted_wallets"], f"{name}: the wallet that does not route is named"
        before = len(republished)
        note = drift.repair() if drift.repair else None
        if replay is None:
            assert note is None and len(republished) == before, f"{name}: left for a person"
            continue
        event_id = (user_registered_id(drifting[name]) if replay == "registered"
                    else compliance_result_id(drifting[name], 2))
        assert note and note.startswith("replayed"), name
        assert [row["envelope"]["event_id"] for row in republished[before:]] == [event_id], name


def test_copies_whose_source_is_still_in_flight_are_left_alone(database, users):
    prefix, seed = users
    in_flight = {seed(name, change) for name, change in IN_FLIGHT.items()}
    found, _checked, _republished = _found(database, prefix)
    assert not [key for key in found if key[1] in in_flight], found


# Review requests in identity's outbox, none recorded by screen-compliance: (published seconds ago, or None
# for unpublished; what screen-compliance's inbox says) -> reported, and replayed by the repair.
REVIEWS = {
    "never received": ((3600, None), True, True),
    "refused by screen-compliance": ((3600, "rejected"), True, False),
    "published within the grace period": ((0, None), False, False),
    "still in identity's outbox": ((None, None), False, False),
}


def test_a_review_request_screen_compliance_never_recorded_is_found_and_replayed(database, owner_engine, users):
    prefix, _seed_user = users
    event_ids = {}
    with owner_engine.begin() as conn:
        for number, (name, ((published_ago, received), _reported, _replayed)) in enumerate(REVIEWS.items()):
            event_id = event_ids[name] = f"ComplianceReviewRequested:{prefix}-review-{number}"
            envelope = {"event_id": event_id, "event_type": "ComplianceReviewRequested", "payload": {
                "review_id": f"{prefix}-review-{number}", "user_id": f"{prefix}-reviewed", "hit_id": number + 1,
                "action": "dismiss"}}
            _execute(conn, "INSERT INTO identity.outbox (dedupe_key, event_id, topic, envelope, attributes, "
                           "published_at, message_id) VALUES (:e, :e, 'compliance.reviews.v1', "
                           "CAST(:envelope AS jsonb), '{}', now() - make_interval(secs => :ago), '3')",
                     e=event_id, envelope=json.dumps(envelope), ago=published_ago)
            if received:
                _execute(conn, "INSERT INTO compliance.inbox (consumer, dedupe_key, event_id, event_type, outcome, "
                               "reason) VALUES ('screen-compliance', :e, :e, 'ComplianceReviewRequested', :o, 'test')",
                         e=event_id, o=received)
        # A row the api never wrote (by hand): its evidence is what it has, and the run goes on.
        event_ids["malformed"] = f"ComplianceReviewRequested:{prefix}-malformed"
        _execute(conn, "INSERT INTO identity.outbox (dedupe_key, event_id, topic, envelope, attributes, "
                       "published_at, message_id) VALUES (:e, :e, 'compliance.reviews.v1', '[1]', '{}', "
                       "now() - interval '1 hour', '3')", e=event_ids["malformed"])
    republished: list = []
    with engine_as(database, "fn_reconcile") as engine:
        found = {d.key: d for d in reviews_vs_compliance(engine, GRACE_SECONDS, {}, republished.extend)
                 if d.kind == REVIEW_MISSING and prefix in d.key}
    assert found.pop(event_ids["malformed"]).source == {"user_id": None, "hit_id": None, "action": None}
    for name, ((_ago, received), reported, replayed) in REVIEWS.items():
        drift = found.get(event_ids[name])
        assert (drift is not None) == reported, name
        if not reported:
            continue
        assert drift.source == {"user_id": f"{prefix}-reviewed", "hit_id": list(REVIEWS).index(name) + 1,
                                "action": "dismiss"}
        assert drift.replica["request_received"] == received
        assert (drift.repair is not None) == replayed, name
        if replayed:
            assert drift.repair().startswith("replayed the api's review request")
            assert [row["envelope"]["event_id"] for row in republished] == [event_ids[name]]
