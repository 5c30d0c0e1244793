"""Screening users: at registration, after a new list snapshot, and when a reviewer decides a hit.

Each run is stored (screening, hits) with the snapshot it used; the subject row holds the user's
current decision. A result is published on compliance.results.v1 at registration and whenever the
decision changes afterwards, with the registration's correlation id and a per-user sequence.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from shared import topics
from shared.addresses import checksum_address, is_hex_address
from shared.compliance import SCHEMA
from shared.compliance.lists import ListCache
from shared.compliance.screening import (
    Decision,
    Hit,
    ListView,
    decide,
    decide_reviewed,
    rejection_kind,
    review_refusal,
    screen,
)
from shared.compliance.settings import ComplianceSettings
from shared.db import Connection, sql
from shared.envelope import Envelope, utc_iso
from shared.errors import InvalidEvent
from shared.events import (
    COMPLIANCE_REVIEW_REQUESTED,
    COMPLIANCE_SCREENED,
    RESCREEN_REQUESTED,
    USER_REGISTERED,
    ComplianceReviewRequestedV1,
    RescreenRequestedV1,
    compliance_result_id,
)
from shared.messaging.consumer import Outgoing

log = logging.getLogger(__name__)
TRIGGER_REGISTRATION = "registration"
TRIGGER_RESCREEN = "rescreen"
TRIGGER_REVIEW = "review"
PENDING, CONFIRMED, DISMISSED = "pending", "confirmed", "dismissed"
REVIEW_ACTIONS = {"confirm": CONFIRMED, "dismiss": DISMISSED}
RESCREEN_BATCH = 100


_KNOWN_SUBJECT = sql(f"SELECT user_id FROM {SCHEMA}.subjects WHERE user_id = :user_id")
_SUBJECT = sql(f"SELECT * FROM {SCHEMA}.subjects WHERE user_id = :user_id")
_SUBJECT_FOR_UPDATE = sql(f"SELECT * FROM {SCHEMA}.subjects WHERE user_id = :user_id FOR UPDATE")
_ADD_SUBJECT = sql(
    f"INSERT INTO {SCHEMA}.subjects (user_id, registered_event_id, correlation_id, name, date_of_birth, country, "
    "wallet_addresses, identity_document, decision, latest_screening_id, last_snapshot_id, result_sequence) "
    "VALUES (:user_id, :registered_event_id, :correlation_id, :name, :date_of_birth, :country, "
    "CAST(:wallet_addresses AS jsonb), CAST(:identity_document AS jsonb), :decision, :latest_screening_id, "
    ":last_snapshot_id, 1)")
# Users of a range of rescreen keys last screened against an older snapshot; another shard's batch is skipped.
_DUE_FOR_RESCREEN = sql(
    f"SELECT * FROM {SCHEMA}.subjects WHERE last_snapshot_id < :snapshot_id AND rescreen_key >= :key_from "
    "AND rescreen_key < :key_to ORDER BY user_id LIMIT :batch FOR UPDATE SKIP LOCKED")
_REVIEWED_HITS = sql(f"SELECT code, list_entry, review_status, score FROM {SCHEMA}.hits WHERE user_id = :user_id "
                     "AND review_status = ANY(CAST(:reviewed AS text[])) ORDER BY hit_id")
_HIT = sql(f"SELECT * FROM {SCHEMA}.hits WHERE hit_id = :hit_id AND user_id = :user_id")
_HITS_OF_SCREENING = sql(f"SELECT code, effect, review_status FROM {SCHEMA}.hits "
                         "WHERE screening_id = :screening_id ORDER BY hit_id")
_RECORD_REVIEW = sql(
    f"INSERT INTO {SCHEMA}.reviews (review_id, hit_id, user_id, action, reviewer, note, requested_at, outcome, "
    "reason) VALUES (:review_id, :hit_id, :user_id, :action, :reviewer, :note, :requested_at, :outcome, :reason)")
_REVIEW_HIT = sql(f"UPDATE {SCHEMA}.hits SET review_status = :review_status, review_id = :review_id "
                  "WHERE hit_id = :hit_id")
_SCREENING = sql(f"SELECT * FROM {SCHEMA}.screenings WHERE screening_id = :screening_id")
_RECORD_SCREENING = sql(
    f"INSERT INTO {SCHEMA}.screenings (user_id, snapshot_id, trigger, cause_event_id, decision, score, reasons) "
    "VALUES (:user_id, :snapshot_id, :trigger, :cause_event_id, :decision, :score, CAST(:reasons AS jsonb)) "
    "RETURNING screening_id")
# A screening's hits in their order (their ids follow it: decisions and carried reviews read them so).
_RECORD_HITS = sql(
    f'INSERT INTO {SCHEMA}.hits (screening_id, user_id, "check", code, effect, score, list_entry, evidence, '
    'review_status) SELECT :screening_id, :user_id, h."check", h.code, h.effect, h.score, h.list_entry, h.evidence, '
    "h.review_status FROM ROWS FROM (jsonb_to_recordset(CAST(:hits AS jsonb)) AS (\"check\" text, code text, "
    "effect text, score numeric, list_entry integer, evidence jsonb, review_status text)) WITH ORDINALITY "
    'AS h("check", code, effect, score, list_entry, evidence, review_status, position) ORDER BY h.position')


@functools.cache
def _update_subject(columns: tuple[str, ...]):
    return sql(f"UPDATE {SCHEMA}.subjects SET {', '.join(f'{column} = :{column}' for column in columns)} "
               "WHERE user_id = :user_id")


def _subject_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What compliance keeps of a registration: the fields screening reads, nothing else."""
    born = payload.get("date_of_birth")
    try:
        date_of_birth = date.fromisoformat(born) if isinstance(born, str) else None
    except ValueError:
        date_of_birth = None
    document = payload.get("identity_document")
    wallets = payload.get("wallet_addresses")
    return {
        "name": payload.get("name") if isinstance(payload.get("name"), str) else None,
        "date_of_birth": date_of_birth,
        "country": payload.get("country") if isinstance(payload.get("country"), str) else None,
        "wallet_addresses": [checksum_address(w) for w in wallets if isinstance(w, str) and is_hex_address(w)]
        if isinstance(wallets, list) else [],
        "identity_document": {key: document.get(key) for key in ("type", "issuing_country", "expires_on")}
        if isinstance(document, dict) else None,
    }


def _screened_view(subject: Any) -> dict[str, Any]:
    """A stored subject in the shape `screen` reads (a registration payload's identity fields)."""
    return {
        "name": subject["name"],
        "date_of_birth": subject["date_of_birth"].isoformat() if subject["date_of_birth"] else None,
        "country": subject["country"],
        "wallet_addresses": list(subject["wallet_addresses"]),
        "identity_document": subject["identity_document"],
    }


class ComplianceService:
    """screen-compliance's handler, and the rescreen function's (one shard of a rescreening)."""

    def __init__(self, settings: ComplianceSettings, lists: ListCache | None = None) -> None:
        self.policy = settings
        self.lists = lists or ListCache()

    # ------------------------------------------------------------------ consumer entry point

    def handle(self, conn: Connection, envelope: Envelope) -> Outgoing:
        """Apply one UserRegistered or ComplianceReviewRequested."""
        if envelope.event_type == USER_REGISTERED:
            return self.screen_registration(conn, envelope)
        if envelope.event_type == COMPLIANCE_REVIEW_REQUESTED:
            return self.apply_review(conn, envelope)
        raise InvalidEvent(f"screen-compliance does not handle {envelope.event_type}", event_id=envelope.event_id)

    # ------------------------------------------------------------------ registration

    def screen_registration(self, conn: Connection, registered: Envelope) -> Outgoing:
        """Screen a newly registered user; store the run; publish the first result."""
        user_id = registered.payload["user_id"]
        if conn.execute(_KNOWN_SUBJECT, {"user_id": user_id}).first():
            log.info("user already screened", extra={"user_id": user_id, "event_id": registered.event_id})
            return []
        view = self.lists.for_subject(conn, registered.payload)
        fields = _subject_fields(registered.payload)
        outcome = screen(registered.payload, self._today(), view, self.policy)
        screening_id = self._store_screening(conn, user_id, view, TRIGGER_REGISTRATION, registered.event_id,
                                             outcome.hits, {}, outcome.decision, outcome.score, outcome.reasons)
        conn.execute(_ADD_SUBJECT, {
            "user_id": user_id, "registered_event_id": registered.event_id,
            "correlation_id": registered.correlation_id, **fields,
            "wallet_addresses": json.dumps(fields["wallet_addresses"]),
            "identity_document": json.dumps(fields["identity_document"]), "decision": outcome.decision.value,
            "latest_screening_id": screening_id, "last_snapshot_id": view.snapshot_id})
        self._log_decision(user_id, TRIGGER_REGISTRATION, outcome.decision, outcome.reasons, view.snapshot_id)
        return [self._result(conn, user_id, None, outcome.reasons, TRIGGER_REGISTRATION, registered.event_id)]

    # ------------------------------------------------------------------ rescreening

    def rescreen_batch(self, conn: Connection, view: ListView, keys: tuple[int, int],
                       request_event_id: str) -> tuple[int, Outgoing]:
        """Rescreen up to RESCREEN_BATCH users with a rescreen key in [from, to), last screened against an
        older snapshot; each one's `last_snapshot_id` moves in this transaction (so once per snapshot).

        A screening records the list snapshot as its cause; a changed decision's result names the shard
        request that carried it (`request_event_id`) as its causation, so a redelivered request finds the
        results its earlier delivery staged (shared/messaging/consumer.py waits for them)."""
        due = conn.execute(_DUE_FOR_RESCREEN, {"snapshot_id": view.snapshot_id, "key_from": keys[0],
                                               "key_to": keys[1], "batch": RESCREEN_BATCH}).mappings().all()
        outgoing = []
        cause = f"ListSnapshotLoaded:{view.snapshot_id}"
        for subject in due:
            outcome = screen(_screened_view(subject), self._today(), view, self.policy)
            carried = self._carried_reviews(conn, subject["user_id"], outcome.hits)
            decision, reasons = decide(outcome.hits, carried)
            screening_id = self._store_screening(conn, subject["user_id"], view, TRIGGER_RESCREEN, cause,
                                                 outcome.hits, carried, decision, outcome.score, reasons)
            changes: dict[str, Any] = {"latest_screening_id": screening_id, "last_snapshot_id": view.snapshot_id,
                                       "updated_at": datetime.now(UTC)}
            previous = Decision(subject["decision"])
            if decision is not previous:
                changes.update(decision=decision.value, result_sequence=subject["result_sequence"] + 1)
            conn.execute(_update_subject(tuple(changes)), {**changes, "user_id": subject["user_id"]})
            if decision is not previous:
                self._log_decision(subject["user_id"], TRIGGER_RESCREEN, decision, reasons, view.snapshot_id,
                                   previous)
                outgoing.append(self._result(conn, subject["user_id"], previous, reasons, TRIGGER_RESCREEN,
                                             request_event_id))
        return len(due), outgoing

    def rescreen_shard(self, conn: Connection, requested: Envelope) -> Outgoing:
        """The `rescreen` function's handler: every user of one shard behind the newest snapshot (which may
        be newer than the one the shard was planned for), in this one transaction."""
        if requested.event_type != RESCREEN_REQUESTED:
            raise InvalidEvent(f"rescreen does not handle {requested.event_type}", event_id=requested.event_id)
        shard = requested.typed(RescreenRequestedV1)
        keys = (shard.key_from, shard.key_to)
        view = self.lists.latest(conn)
        started = time.monotonic()
        total = 0
        outgoing: list[tuple[str, Envelope]] = []
        while True:
            count, changed = self.rescreen_batch(conn, view, keys, requested.event_id)
            total += count
            outgoing.extend(changed)
            if count < RESCREEN_BATCH:
                break
        log.info("rescreen shard done", extra={
            "snapshot_id": view.snapshot_id, "planned_snapshot_id": shard.snapshot_id,
            "generation": shard.generation, "shard": shard.shard,
            "shards": shard.shards, "rescreened": total, "decisions_changed": len(outgoing),
            "seconds": round(time.monotonic() - started, 2)})
        return outgoing

    def _carried_reviews(self, conn: Connection, user_id: str, new_hits: list[Hit]) -> dict[int, str]:
        """Reviewers' latest decisions on the same finding, applied to this run's REVIEW hits.

        The same finding: a name match on the same SDN entry, or an AML score no higher than the one
        reviewed. Anything else is new and waits for a reviewer again.
        """
        decided = {
            (row.code, row.list_entry): (row.review_status, row.score)
            for row in conn.execute(_REVIEWED_HITS, {"user_id": user_id, "reviewed": [CONFIRMED, DISMISSED]})
        }
        carried = {}
        for index, hit in enumerate(new_hits):
            status, reviewed_score = decided.get((hit.code, hit.list_entry), (None, None))
            if hit.effect is not Decision.REVIEW or status is None:
                continue
            if hit.list_entry is None and (reviewed_score is None or (hit.score or 0) > reviewed_score):
                continue
            carried[index] = status
        return carried

    # ------------------------------------------------------------------ reviews

    def apply_review(self, conn: Connection, requested: Envelope) -> Outgoing:
        """Confirm or dismiss a pending REVIEW hit; re-decide the user; publish when the decision changes."""
        review = requested.typed(ComplianceReviewRequestedV1)
        action = REVIEW_ACTIONS[review.action]  # the schema admits confirm and dismiss only
        user_id = review.user_id
        subject = conn.execute(_SUBJECT_FOR_UPDATE, {"user_id": user_id}).mappings().first()
        hit = conn.execute(_HIT, {"hit_id": review.hit_id, "user_id": user_id}).mappings().first()
        if hit is None:
            # Nothing to record it against (a review row names an existing hit): refused with the reason.
            raise InvalidEvent(f"review names hit {review.hit_id}, which user {user_id} does not have",
                               event_id=requested.event_id)
        reason = review_refusal(subject, hit)
        conn.execute(_RECORD_REVIEW, {
            "review_id": review.review_id, "hit_id": review.hit_id, "user_id": user_id, "action": review.action,
            "reviewer": review.reviewer, "note": review.note,
            "requested_at": datetime.fromisoformat(review.requested_at),
            "outcome": "ignored" if reason else "applied", "reason": reason})
        if reason or subject is None:
            log.warning("review ignored", extra={"review_id": review.review_id, "reason": reason})
            return []
        conn.execute(_REVIEW_HIT, {"hit_id": hit["hit_id"], "review_status": action, "review_id": review.review_id})
        decision, reasons = self._current_decision(conn, subject["latest_screening_id"])
        previous = Decision(subject["decision"])
        log.info("review applied", extra={"review_id": review.review_id, "user_id": user_id, "action": action,
                                          "decision": decision.value})
        if decision is previous:
            return []
        changes = {"decision": decision.value, "result_sequence": subject["result_sequence"] + 1,
                   "updated_at": datetime.now(UTC)}
        conn.execute(_update_subject(tuple(changes)), {**changes, "user_id": user_id})
        self._log_decision(user_id, TRIGGER_REVIEW, decision, reasons, None, previous)
        return [self._result(conn, user_id, previous, reasons, TRIGGER_REVIEW, requested.event_id)]

    def _current_decision(self, conn: Connection, screening_id: int) -> tuple[Decision, list[str]]:
        rows = conn.execute(_HITS_OF_SCREENING, {"screening_id": screening_id}).all()
        return decide_reviewed([(row.code, row.effect, row.review_status) for row in rows])

    # ------------------------------------------------------------------ storage and results

    def _store_screening(self, conn: Connection, user_id: str, view: ListView, trigger: str, cause_event_id: str,
                         found: list[Hit], carried: Mapping[int, str], decision: Decision, score: int,
                         reasons: list[str]) -> int:
        screening_id: int = conn.execute(_RECORD_SCREENING, {
            "user_id": user_id, "snapshot_id": view.snapshot_id, "trigger": trigger, "cause_event_id": cause_event_id,
            "decision": decision.value, "score": score, "reasons": json.dumps(reasons)}).scalar_one()
        if found:
            conn.execute(_RECORD_HITS, {"screening_id": screening_id, "user_id": user_id, "hits": json.dumps([{
                "check": hit.check, "code": hit.code, "effect": hit.effect.value,
                "score": str(hit.score) if hit.score is not None else None, "list_entry": hit.list_entry,
                "evidence": hit.evidence,
                "review_status": carried.get(index, PENDING) if hit.effect is Decision.REVIEW else None,
            } for index, hit in enumerate(found)])})
        return screening_id

    def _result(self, conn: Connection, user_id: str, previous: Decision | None, reasons: list[str], trigger: str,
                cause_event_id: str) -> tuple[str, Envelope]:
        subject = conn.execute(_SUBJECT, {"user_id": user_id}).mappings().one()
        run = conn.execute(_SCREENING, {"screening_id": subject["latest_screening_id"]}).mappings().one()
        now = datetime.now(UTC)
        return topics.COMPLIANCE_RESULTS, Envelope(
            event_id=compliance_result_id(user_id, subject["result_sequence"]),
            event_type=COMPLIANCE_SCREENED,
            schema_version=1,
            occurred_at=utc_iso(now),
            correlation_id=subject["correlation_id"],
            causation_id=cause_event_id,
            payload={
                "user_id": user_id,
                "decision": subject["decision"],
                "previous_decision": previous.value if previous else None,
                "sequence": subject["result_sequence"],
                "score": run["score"],
                "reasons": reasons,
                "rejection": rejection_kind(subject["decision"], reasons),
                "screening_id": run["screening_id"],
                "snapshot_id": run["snapshot_id"],
                "trigger": trigger,
                "wallet_addresses": list(subject["wallet_addresses"]),
                "decided_at": utc_iso(now),
            },
        )

    def _log_decision(self, user_id: str, trigger: str, decision: Decision, reasons: list[str],
                      snapshot_id: int | None, previous: Decision | None = None) -> None:
        # Ids and codes only: never the name, date of birth or document.
        log.info("compliance decision", extra={
            "user_id": user_id, "trigger": trigger, "decision": decision.value, "reasons": reasons,
            "previous_decision": previous.value if previous else None, "snapshot_id": snapshot_id})

    @staticmethod
    def _today() -> date:
        return datetime.now(UTC).date()
