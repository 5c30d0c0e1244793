"""One screening of one user (pure): KYC, sanctions and AML checks, each producing hits, and a decision.

Every hit carries its evidence and its *effect*: what it does to the decision on its own
(REJECTED, REVIEW, or APPROVED for evidence that only feeds the score). The decision is the worst
effect among the hits a reviewer has not dismissed; a confirmed REVIEW hit counts as REJECTED.

Evidence never holds the user's name, date of birth or document number: it describes the list side
(the SDN entry matched) and the rule that fired.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

# The screening rules are the compliance settings (thresholds, jurisdictions, minimum age).
from shared.addresses import checksum_address, is_hex_address
from shared.compliance.settings import ComplianceSettings as Policy

if TYPE_CHECKING:  # the api validates documents with this module and does not ship rapidfuzz
    from shared.compliance.names import NameIndex

DOCUMENT_TYPES = ("passport", "national_id", "driving_licence")
# AML score parts (0-100 in all): a listed wallet is 100; a name match scores up to 40, so a weak match
# alone stays below the usual review score (50) and a weak match from a high-risk country (40) does not.
NAME_MATCH_WEIGHT = 40
HIGH_RISK_JURISDICTION_POINTS = 40
KYC_FINDING_POINTS = 25


class Decision(StrEnum):
    """A screening's outcome, in rising severity."""

    APPROVED = "APPROVED"
    REVIEW = "REVIEW"
    REJECTED = "REJECTED"

    @property
    def severity(self) -> int:
        return list(Decision).index(self)


@dataclass(frozen=True)
class Hit:
    """One finding of one check."""

    check: str
    code: str
    effect: Decision
    evidence: dict[str, Any] = field(default_factory=dict)
    score: Decimal | None = None
    # The SDN entry a sanctions hit points at (reviews carry forward per entry).
    list_entry: int | None = None


@dataclass(frozen=True)
class ListView:
    """What a screening reads from one list snapshot."""

    snapshot_id: int
    wallets: Mapping[str, int | None]
    names: NameIndex
    # ent_num -> {name, sdn_type, programs} for the evidence of name hits
    entries: Mapping[int, dict]


@dataclass(frozen=True)
class Outcome:
    """The result of one screening: hits, AML score and decision with its reasons."""

    hits: list[Hit]
    score: int
    decision: Decision
    reasons: list[str]


def _age_on(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        return None


def _kyc_field_problem(code: str, field_name: str, problem: str) -> Hit:
    return Hit("kyc", code, Decision.REJECTED, {"field": field_name, "problem": problem})


def check_kyc(subject: Mapping[str, Any], today: date, policy: Policy) -> list[Hit]:
    """Required identity fields present and well formed; age, document expiry, jurisdiction."""
    hits: list[Hit] = []
    if not isinstance(subject.get("name"), str) or not subject["name"].strip():
        hits.append(_kyc_field_problem("kyc.missing_field", "name", "is missing"))
    born = _date(subject.get("date_of_birth"))
    if born is None:
        hits.append(_kyc_field_problem("kyc.malformed_field", "date_of_birth", "is not a date as YYYY-MM-DD"))
    elif _age_on(born, today) < policy.min_age:
        hits.append(Hit("kyc", "kyc.under_minimum_age", Decision.REJECTED,
                        {"minimum_age": policy.min_age, "age": _age_on(born, today)}))
    country = subject.get("country")
    if not isinstance(country, str) or len(country) != 2:
        hits.append(_kyc_field_problem("kyc.malformed_field", "country", "is not an ISO 3166-1 alpha-2 code"))
    document = subject.get("identity_document")
    if not isinstance(document, dict):
        hits.append(_kyc_field_problem("kyc.missing_field", "identity_document", "is missing"))
        document = {}
    else:
        if document.get("type") not in DOCUMENT_TYPES:
            hits.append(_kyc_field_problem("kyc.malformed_field", "identity_document.type",
                                           f"is not one of {', '.join(DOCUMENT_TYPES)}"))
        expires_on = _date(document.get("expires_on"))
        if expires_on is None:
            hits.append(_kyc_field_problem("kyc.malformed_field", "identity_document.expires_on",
                                           "is not a date as YYYY-MM-DD"))
        elif expires_on < today:
            hits.append(Hit("kyc", "kyc.document_expired", Decision.REJECTED,
                            {"expired_on": expires_on.isoformat()}))
    for field_name, code in (("country", country), ("identity_document.issuing_country",
                                                     document.get("issuing_country"))):
        if isinstance(code, str) and code.upper() in policy.prohibited_jurisdictions:
            hits.append(Hit("kyc", "kyc.prohibited_jurisdiction", Decision.REJECTED,
                            {"field": field_name, "jurisdiction": code.upper()}))
    wallets = subject.get("wallet_addresses")
    if not isinstance(wallets, list) or not wallets or not all(
            isinstance(w, str) and is_hex_address(w) for w in wallets):
        hits.append(_kyc_field_problem("kyc.malformed_field", "wallet_addresses",
                                       "is not a non-empty list of Ethereum addresses"))
    return hits


def check_wallets(wallets: Any, listed: Mapping[str, int | None]) -> list[Hit]:
    """Exact matches of the user's wallets against the listed addresses, after EIP-55 normalisation."""
    if not isinstance(wallets, list):
        return []
    hits = []
    for wallet in wallets:
        if isinstance(wallet, str) and is_hex_address(wallet):
            address = checksum_address(wallet)
            if address in listed:
                hits.append(Hit("sanctions.wallet", "sanctions.listed_wallet", Decision.REJECTED,
                                {"wallet": address, "list": "OFAC SDN digital currency addresses"},
                                Decimal(1), listed[address]))
    return hits


def check_name(name: Any, lists: ListView, policy: Policy) -> list[Hit]:
    """Fuzzy matches of the user's name against SDN names and aliases, each with its evidence: the entry,
    the listed tokens matched and by which rule, what was missing (never the user's own words)."""
    if not isinstance(name, str) or not name.strip():
        return []
    hits = []
    for match in lists.names.search(name, policy.name_report_threshold):
        entry = lists.entries.get(match.listed.ent_num, {})
        strong = match.score >= policy.name_review_threshold
        hits.append(Hit(
            "sanctions.name", "sanctions.name_match" if strong else "sanctions.weak_name_match",
            Decision.REVIEW if strong else Decision.APPROVED,
            {"listed_name": match.listed.name, "alias_of": entry.get("name") if match.listed.alt_num else None,
             "sdn_type": entry.get("sdn_type"), "programs": entry.get("programs"), "ent_num": match.listed.ent_num,
             **match.describe()},
            Decimal(str(match.score)), match.listed.ent_num))
    return hits


def aml_score(country: Any, hits: list[Hit], policy: Policy) -> tuple[int, dict[str, int]]:
    """0-100 from jurisdiction risk, the sanctions match score and KYC findings, with its parts."""
    code = country.upper() if isinstance(country, str) else ""
    jurisdiction = (100 if code in policy.prohibited_jurisdictions
                    else HIGH_RISK_JURISDICTION_POINTS if code in policy.high_risk_jurisdictions else 0)
    sanctions = max((round(float(hit.score or 0) * (100 if hit.check == "sanctions.wallet" else NAME_MATCH_WEIGHT))
                     for hit in hits if hit.check.startswith("sanctions.")), default=0)
    kyc = KYC_FINDING_POINTS * sum(1 for hit in hits if hit.check == "kyc")
    parts = {"jurisdiction": jurisdiction, "sanctions": sanctions, "kyc": kyc}
    return min(100, sum(parts.values())), parts


def decide(hits: list[Hit], reviews: Mapping[int, str] | None = None) -> tuple[Decision, list[str]]:
    """The worst effect among the hits, counting reviews (index -> confirmed/dismissed); and why."""
    reviews = reviews or {}
    decision = Decision.APPROVED
    reasons = []
    for index, hit in enumerate(hits):
        effect = hit.effect
        if reviews.get(index) == "dismissed":
            continue
        if reviews.get(index) == "confirmed":
            effect = Decision.REJECTED
        if effect is not Decision.APPROVED:
            reasons.append(hit.code)
            if effect.severity > decision.severity:
                decision = effect
    return decision, sorted(set(reasons))


def decide_reviewed(stored: list[tuple[str, str, str | None]]) -> tuple[Decision, list[str]]:
    """The decision of a stored run: its hits as (code, effect, review_status), reviews counted."""
    found = [Hit("", code, Decision(effect)) for code, effect, _ in stored]
    return decide(found, {index: status for index, (_, _, status) in enumerate(stored)
                          if status in ("confirmed", "dismissed")})


def review_refusal(subject: Any, hit: Any) -> str | None:
    """Why a reviewer's decision cannot apply to this hit (row) of this subject (row), or None when it can."""
    if subject is None or hit is None:
        return "no such hit for this user"
    if hit["screening_id"] != subject["latest_screening_id"]:
        return "the hit belongs to an earlier screening"
    if hit["review_status"] != "pending":
        return f"the hit is not pending review (it is {hit['review_status'] or 'not reviewable'})"
    return None


# Rejections the user can put right (a new document, a corrected field, coming of age) are "retry", as in
# Sumsub's RETRY; any other reason (a listed wallet, a confirmed match, a prohibited jurisdiction) is "final".
RETRYABLE_REASONS = frozenset({"kyc.missing_field", "kyc.malformed_field", "kyc.document_expired",
                               "kyc.under_minimum_age"})


def rejection_kind(decision: Decision | str, reasons: list[str]) -> str | None:
    """For a REJECTED decision, "retry" when every reason is one the user can put right, else "final"."""
    if Decision(decision) is not Decision.REJECTED:
        return None
    return "retry" if reasons and set(reasons) <= RETRYABLE_REASONS else "final"


def screen(subject: Mapping[str, Any], today: date, lists: ListView, policy: Policy) -> Outcome:
    """Run every check on `subject` (the identity fields of a UserRegistered payload)."""
    hits = check_kyc(subject, today, policy)
    hits += check_wallets(subject.get("wallet_addresses"), lists.wallets)
    hits += check_name(subject.get("name"), lists, policy)
    score, parts = aml_score(subject.get("country"), hits, policy)
    # The score escalates on its own only from what does not already escalate (a weak name match in a
    # high-risk country, say): dismissing a strong match must not leave a REVIEW made of that same match.
    residual, residual_parts = aml_score(subject.get("country"),
                                         [hit for hit in hits if hit.effect is Decision.APPROVED], policy)
    if residual >= policy.aml_review_score:
        hits.append(Hit("aml", "aml.high_risk_score", Decision.REVIEW, {"score": residual, "parts": residual_parts},
                        Decimal(residual)))
    decision, reasons = decide(hits)
    return Outcome(hits, score, decision, reasons)
