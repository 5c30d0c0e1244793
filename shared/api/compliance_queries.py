"""Compliance for the API: a user's status and full screening history; reviewers' requests."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from shared import topics
from shared.api.caller import Headers, Unidentified, verified_caller
from shared.compliance import SCHEMA
from shared.compliance.screening import decide_reviewed, rejection_kind, review_refusal
from shared.db import Connection, sql
from shared.envelope import Envelope, utc_iso
from shared.errors import InvalidRequest
from shared.events import COMPLIANCE_REVIEW_REQUESTED, MAX_BIGINT, MAX_TEXT_LENGTH, review_id, review_requested_id
from shared.identity import SCHEMA as IDENTITY_SCHEMA
from shared.messaging import outbox

log = logging.getLogger(__name__)

# Not screened yet (the registration is on its way to screen-compliance).
PENDING_SCREENING = "PENDING"
REVIEW_FIELDS = ("hit_id", "action", "reviewer", "note")
# Why a review was refused to its caller: no identity Cloud Run verified, not among COMPLIANCE_REVIEWERS, or
# the user under review.
UNIDENTIFIED, NOT_A_REVIEWER, OWN_SCREENING = "unidentified", "not_a_reviewer", "own_screening"
# A review request identity's outbox holds, by its event id (the outbox's unique dedupe key).
_STAGED_REVIEW = sql(f"SELECT envelope->'payload' FROM {IDENTITY_SCHEMA}.outbox WHERE dedupe_key = :event_id")
# A user's reviews in the order applied; read by index (reviews_by_user, migration 0021).
_REVIEWS_OF_USER = sql(f"SELECT * FROM {SCHEMA}.reviews WHERE user_id = :user_id ORDER BY applied_at")
_DECISION = sql(f"SELECT decision FROM {SCHEMA}.subjects WHERE user_id = :user_id")
_SUBJECT = sql(f"SELECT * FROM {SCHEMA}.subjects WHERE user_id = :user_id")
# A user's screenings, newest first, each with the list snapshot it was screened against.
_SCREENINGS = sql(
    f"SELECT s.*, l.source, l.published_at, l.loaded_at, l.counts FROM {SCHEMA}.screenings s "
    f"JOIN {SCHEMA}.list_snapshots l ON l.snapshot_id = s.snapshot_id WHERE s.user_id = :user_id "
    "ORDER BY s.screening_id DESC")
_HITS = sql(f"SELECT * FROM {SCHEMA}.hits WHERE user_id = :user_id ORDER BY hit_id")
_HIT = sql(f"SELECT * FROM {SCHEMA}.hits WHERE hit_id = :hit_id AND user_id = :user_id")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def compliance_status(conn: Connection, user_id: str) -> str:
    """The user's current decision, or PENDING before the first screening."""
    return conn.execute(_DECISION, {"user_id": user_id}).scalar() or PENDING_SCREENING


def compliance_history(conn: Connection, user_id: str) -> dict:
    """Current status, every screening (newest first) with its hits and list snapshot, and every review."""
    subject = conn.execute(_SUBJECT, {"user_id": user_id}).mappings().first()
    runs = conn.execute(_SCREENINGS, {"user_id": user_id}).mappings().all()
    found: dict[int, list[dict]] = {}
    for hit in conn.execute(_HITS, {"user_id": user_id}).mappings():
        found.setdefault(hit["screening_id"], []).append({
            "hit_id": hit["hit_id"], "check": hit["check"], "code": hit["code"], "effect": hit["effect"],
            "score": str(hit["score"]) if hit["score"] is not None else None, "list_entry": hit["list_entry"],
            "evidence": hit["evidence"], "review_status": hit["review_status"], "review_id": hit["review_id"]})
    current_reasons: list[str] = []
    if subject:
        latest = found.get(subject["latest_screening_id"], [])
        _, current_reasons = decide_reviewed([(h["code"], h["effect"], h["review_status"]) for h in latest])
    decided = conn.execute(_REVIEWS_OF_USER, {"user_id": user_id}).mappings().all()
    return {
        "user_id": user_id,
        "status": subject["decision"] if subject else PENDING_SCREENING,
        "reasons": current_reasons,
        "rejection": rejection_kind(subject["decision"], current_reasons) if subject else None,
        "updated_at": _iso(subject["updated_at"]) if subject else None,
        "list_snapshot_id": subject["last_snapshot_id"] if subject else None,
        "screenings": [{
            "screening_id": run["screening_id"], "trigger": run["trigger"], "decision": run["decision"],
            "score": run["score"], "reasons": run["reasons"], "screened_at": _iso(run["screened_at"]),
            "rejection": rejection_kind(run["decision"], run["reasons"]),
            "cause_event_id": run["cause_event_id"],
            "list_snapshot": {"snapshot_id": run["snapshot_id"], "source": run["source"],
                              "published_at": _iso(run["published_at"]), "loaded_at": _iso(run["loaded_at"]),
                              "counts": run["counts"]},
            "hits": found.get(run["screening_id"], []),
        } for run in runs],
        "reviews": [{
            "review_id": r["review_id"], "hit_id": r["hit_id"], "action": r["action"], "reviewer": r["reviewer"],
            "note": r["note"], "requested_at": _iso(r["requested_at"]), "applied_at": _iso(r["applied_at"]),
            "outcome": r["outcome"], "reason": r["reason"]} for r in decided],
    }


def validate_review(body: Any, reviewer: str) -> dict:
    """A request by `reviewer` (the caller Cloud Run verified: `reviewing_caller`), or InvalidRequest naming
    each bad field. The body may repeat the reviewer, as clients written before identities were verified
    do, but never name someone else."""
    if not isinstance(body, dict):
        raise InvalidRequest({"body": "must be a JSON object"})
    named = body.get("reviewer")
    problems = {
        "hit_id": None if isinstance(body.get("hit_id"), int) and not isinstance(body["hit_id"], bool)
        and 1 <= body["hit_id"] <= MAX_BIGINT else "must be the integer id of a hit",
        "action": None if body.get("action") in ("confirm", "dismiss") else "must be confirm or dismiss",
        "note": None if body.get("note") is None
        or (isinstance(body["note"], str) and len(body["note"]) <= MAX_TEXT_LENGTH)
        else f"must be a string of at most {MAX_TEXT_LENGTH} characters",
        "reviewer": None if named is None or (isinstance(named, str) and named.strip().lower() == reviewer)
        else f"must be left out or be the caller's verified identity ({reviewer})",
    }
    for unknown in sorted(set(body) - set(REVIEW_FIELDS)):
        problems[unknown] = "is not a field of a review"
    found = {name: problem for name, problem in problems.items() if problem}
    if found:
        raise InvalidRequest(found)
    return body


def reviewing_caller(headers: Headers, reviewers: frozenset[str], user_id: str) -> str:
    """The verified caller (their email) when they may decide on compliance hits; 401 when the request
    carries no identity Cloud Run verified, 403 when the caller is not among COMPLIANCE_REVIEWERS."""
    try:
        caller = verified_caller(headers)
    except Unidentified as exc:
        _log_refused_caller(UNIDENTIFIED, user_id, reason=exc.reason)
        raise Unauthorized(f"A review needs the reviewer's verified identity: {exc.reason}.",
                           www_authenticate=WWWAuthenticate("bearer")) from None
    if caller not in reviewers:
        _log_refused_caller(NOT_A_REVIEWER, user_id, caller=caller)
        raise Forbidden(f"{caller} is not a compliance reviewer (COMPLIANCE_REVIEWERS).")
    return caller


def refuse_own_review(user: dict, reviewer: str) -> None:
    """403 when the reviewer is the user under review (by the email the user registered)."""
    if str(user["email"]).strip().lower() == reviewer:
        _log_refused_caller(OWN_SCREENING, user["user_id"], caller=reviewer)
        raise Forbidden("A reviewer cannot decide on their own screening.")


def _log_refused_caller(refusal: str, user_id: str, **details: str) -> None:
    """The one line of a review refused to its caller; a log-based metric alerts on it (terraform/monitoring.tf)."""
    log.warning("compliance review refused to its caller", extra={"refusal": refusal, "user_id": user_id, **details})


def request_review(conn: Connection, user_id: str, review: dict, reviewer: str) -> tuple[dict | None, str | None]:
    """Stage the review by `reviewer` (verified) for screen-compliance; (accepted review, None) or (None, why it
    cannot be)."""
    subject = conn.execute(_SUBJECT, {"user_id": user_id}).mappings().first()
    hit = conn.execute(_HIT, {"hit_id": review["hit_id"], "user_id": user_id}).mappings().first()
    refusal = review_refusal(subject, hit)
    if refusal or subject is None:
        return None, refusal
    request_id = review_id(user_id, review["hit_id"], review["action"], reviewer)
    requested_at = utc_iso(datetime.now(UTC))
    event_id = review_requested_id(request_id)
    payload = {"review_id": request_id, "user_id": user_id, "hit_id": review["hit_id"], "action": review["action"],
               "reviewer": reviewer, "note": review.get("note"), "requested_at": requested_at}
    if not outbox.enqueue(conn, IDENTITY_SCHEMA, topics.COMPLIANCE_REVIEWS, Envelope(
            event_id=event_id, event_type=COMPLIANCE_REVIEW_REQUESTED, schema_version=1, occurred_at=requested_at,
            correlation_id=subject["correlation_id"], causation_id=None, payload=payload)):
        # The client's retry of a request still in flight: answered as it was first accepted.
        payload = conn.execute(_STAGED_REVIEW, {"event_id": event_id}).scalar_one()
    return {"review_id": request_id, "status": "accepted", **payload}, None
