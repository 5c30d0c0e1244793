"""KYC, sanctions and AML checks and the decision (pure), against the real list."""

from datetime import date
from decimal import Decimal

import pytest

from shared.compliance.screening import Decision, Hit, decide, rejection_kind, screen
from tests.support.compliance import SCREENING_POLICY, real_list_view

TODAY = date(2026, 11, 26)
POLICY = SCREENING_POLICY


@pytest.fixture(scope="module")
def view():
    return real_list_view()


def subject(**overrides):
    base = {"name": "Ada Lovelace", "date_of_birth": "1990-12-10", "country": "GB",
            "wallet_addresses": ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"],
            "identity_document": {"type": "passport", "issuing_country": "GB", "expires_on": "2030-01-01"}}
    return {**base, **overrides}


def test_a_clean_adult_is_approved_with_no_hits(view):
    outcome = screen(subject(), TODAY, view, POLICY)
    assert (outcome.decision, outcome.hits, outcome.score, outcome.reasons) == (Decision.APPROVED, [], 0, [])


def test_the_minimum_age_counts_birthdays(view):
    assert screen(subject(date_of_birth="2008-11-26"), TODAY, view, POLICY).decision is Decision.APPROVED
    under = screen(subject(date_of_birth="2008-11-27"), TODAY, view, POLICY)
    assert (under.decision, under.reasons) == (Decision.REJECTED, ["kyc.under_minimum_age"])
    assert under.hits[0].evidence == {"minimum_age": 18, "age": 17}


@pytest.mark.parametrize("overrides, code", [
    ({"identity_document": {"type": "passport", "issuing_country": "GB", "expires_on": "2026-11-25"}},
     "kyc.document_expired"),
    ({"country": "KP"}, "kyc.prohibited_jurisdiction"),
    ({"identity_document": {"type": "passport", "issuing_country": "IR", "expires_on": "2030-01-01"}},
     "kyc.prohibited_jurisdiction"),
    ({"identity_document": None}, "kyc.missing_field"),
    ({"date_of_birth": "1990-13-01"}, "kyc.malformed_field"),
    ({"wallet_addresses": ["0x1234"]}, "kyc.malformed_field"),
])
def test_kyc_findings_reject(view, overrides, code):
    outcome = screen(subject(**overrides), TODAY, view, POLICY)
    assert outcome.decision is Decision.REJECTED
    assert code in outcome.reasons


def test_a_listed_wallet_matches_in_any_case_and_rejects(view):
    listed = sorted(view.wallets)[0]
    outcome = screen(subject(wallet_addresses=[listed.lower()]), TODAY, view, POLICY)
    assert (outcome.decision, outcome.reasons, outcome.score) == (Decision.REJECTED, ["sanctions.listed_wallet"], 100)
    assert outcome.hits[0].evidence["wallet"] == listed


def test_a_strong_name_match_is_review_and_a_dismissal_approves(view):
    outcome = screen(subject(name="Carlos Alberto Naser Arana"), TODAY, view, POLICY)
    assert (outcome.decision, outcome.reasons) == (Decision.REVIEW, ["sanctions.name_match"])
    assert decide(outcome.hits, {0: "dismissed"}) == (Decision.APPROVED, [])
    assert decide(outcome.hits, {0: "confirmed"}) == (Decision.REJECTED, ["sanctions.name_match"])


def test_a_weak_name_match_in_a_high_risk_country_is_review_by_score(view):
    # Scores between report (0.85) and review (0.92) against GAXIOLA GARCIA, Maria Elena (a second
    # family name that is not hers).
    weak = screen(subject(name="Maria Elena Gaxiola Lopez"), TODAY, view, POLICY)
    assert {h.code for h in weak.hits} == {"sanctions.weak_name_match"}
    assert weak.decision is Decision.APPROVED and 0 < weak.score < 50
    risky = screen(subject(name="Maria Elena Gaxiola Lopez", country="AF"), TODAY, view, POLICY)
    assert (risky.decision, risky.reasons) == (Decision.REVIEW, ["aml.high_risk_score"])


def test_the_decision_is_the_worst_effect():
    hits = [Hit("aml", "a", Decision.APPROVED), Hit("x", "b", Decision.REVIEW), Hit("y", "c", Decision.REJECTED,
                                                                                  score=Decimal(1))]
    assert decide(hits) == (Decision.REJECTED, ["b", "c"])


def test_rejections_the_user_can_put_right_are_retry_the_rest_final():
    assert rejection_kind("APPROVED", []) is None
    assert rejection_kind("REVIEW", ["sanctions.name_match"]) is None
    assert rejection_kind("REJECTED", ["kyc.document_expired", "kyc.under_minimum_age"]) == "retry"
    assert rejection_kind("REJECTED", ["kyc.document_expired", "sanctions.listed_wallet"]) == "final"
    assert rejection_kind("REJECTED", ["kyc.prohibited_jurisdiction"]) == "final"


def test_a_review_applies_only_to_a_pending_hit_of_the_latest_run():
    from shared.compliance.screening import decide_reviewed, review_refusal

    subject = {"latest_screening_id": 2}
    assert review_refusal(subject, {"screening_id": 2, "review_status": "pending"}) is None
    assert review_refusal(None, None) == "no such hit for this user"
    assert "earlier screening" in review_refusal(subject, {"screening_id": 1, "review_status": "pending"})
    assert "it is dismissed" in review_refusal(subject, {"screening_id": 2, "review_status": "dismissed"})
    assert "not reviewable" in review_refusal(subject, {"screening_id": 2, "review_status": None})
    stored = [("sanctions.name_match", "REVIEW", "dismissed"), ("aml.high_risk_score", "REVIEW", "confirmed")]
    assert decide_reviewed(stored) == (Decision.REJECTED, ["aml.high_risk_score"])
