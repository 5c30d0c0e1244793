"""The compliance functions' settings: the screening policy, and where the sanctions lists come from."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import EnvReader

DEFAULT_COMPLIANCE_MIN_AGE = 18
# Name match scores (0-1): at or above REVIEW a human looks; between REPORT and REVIEW it feeds the score.
DEFAULT_NAME_MATCH_REVIEW_THRESHOLD = 0.92
DEFAULT_NAME_MATCH_REPORT_THRESHOLD = 0.85
DEFAULT_AML_REVIEW_SCORE = 50
DEFAULT_SANCTIONS_FETCH_TIMEOUT_SECONDS = 60.0
# A rescreening fans out into shards of about this many users (one `rescreen` invocation each, ~10 s);
# users still behind this long after the last fan-out are fanned out again.
DEFAULT_RESCREEN_SHARD_USERS = 1000
DEFAULT_RESCREEN_REPLAN_SECONDS = 1800.0


def _jurisdictions(reader: EnvReader, name: str) -> frozenset[str]:
    """A comma-separated list of ISO 3166-1 alpha-2 codes; required (it may be `none`)."""
    import pycountry

    text = reader.required(name)
    if text.lower() == "none":
        return frozenset()
    codes = frozenset(code.strip().upper() for code in text.split(",") if code.strip())
    unknown = sorted(code for code in codes if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None)
    if unknown:
        reader.malformed.append(f"{name}: {', '.join(unknown)} not ISO 3166-1 alpha-2 codes")
    return codes


@dataclass(frozen=True)
class ComplianceSettings:
    """The screening policy of `screen-compliance` and `refresh-sanctions`.

    The jurisdiction lists are policy, not tuning, so they have no default: a deployment states them
    (`none` for an empty list).
    """

    min_age: int
    prohibited_jurisdictions: frozenset[str]
    high_risk_jurisdictions: frozenset[str]
    name_review_threshold: float
    name_report_threshold: float
    aml_review_score: int

    @classmethod
    def read(cls, reader: EnvReader) -> ComplianceSettings:
        """Read the compliance policy, recording what is missing or malformed."""
        settings = cls(
            min_age=reader.integer("COMPLIANCE_MIN_AGE", reader.optional("COMPLIANCE_MIN_AGE"),
                                   DEFAULT_COMPLIANCE_MIN_AGE),
            prohibited_jurisdictions=_jurisdictions(reader, "PROHIBITED_JURISDICTIONS"),
            high_risk_jurisdictions=_jurisdictions(reader, "HIGH_RISK_JURISDICTIONS"),
            name_review_threshold=reader.number("NAME_MATCH_REVIEW_THRESHOLD", DEFAULT_NAME_MATCH_REVIEW_THRESHOLD),
            name_report_threshold=reader.number("NAME_MATCH_REPORT_THRESHOLD", DEFAULT_NAME_MATCH_REPORT_THRESHOLD),
            aml_review_score=reader.integer("AML_REVIEW_SCORE", reader.optional("AML_REVIEW_SCORE"),
                                            DEFAULT_AML_REVIEW_SCORE),
        )
        if not 0 < settings.name_report_threshold <= settings.name_review_threshold <= 1:
            reader.malformed.append("need 0 < NAME_MATCH_REPORT_THRESHOLD <= NAME_MATCH_REVIEW_THRESHOLD <= 1")
        if not 0 < settings.aml_review_score <= 100:
            reader.malformed.append("AML_REVIEW_SCORE must be 1 to 100")
        return settings


@dataclass(frozen=True)
class SanctionsSourceSettings:
    """Where `refresh-sanctions` downloads OFAC's files from."""

    # Base URL of SDN.CSV, ALT.CSV, ADD.CSV and SDN_COMMENTS.CSV.
    list_base_url: str
    # A plain-text list of sanctioned ETH addresses (OFAC lists some only in its XML); optional.
    address_list_url: str | None
    timeout_seconds: float
    rescreen_shard_users: int
    rescreen_replan_seconds: float

    @classmethod
    def read(cls, reader: EnvReader) -> SanctionsSourceSettings:
        """Read the list source and the rescreening's fan-out, recording what is missing or malformed."""
        settings = cls(
            list_base_url=reader.required("SANCTIONS_LIST_BASE_URL").rstrip("/"),
            address_list_url=reader.optional("SANCTIONED_ADDRESSES_URL"),
            timeout_seconds=reader.number("SANCTIONS_FETCH_TIMEOUT_SECONDS", DEFAULT_SANCTIONS_FETCH_TIMEOUT_SECONDS),
            rescreen_shard_users=reader.integer("RESCREEN_SHARD_USERS", reader.optional("RESCREEN_SHARD_USERS"),
                                                DEFAULT_RESCREEN_SHARD_USERS),
            rescreen_replan_seconds=reader.number("RESCREEN_REPLAN_SECONDS", DEFAULT_RESCREEN_REPLAN_SECONDS),
        )
        if settings.rescreen_shard_users < 1 or settings.rescreen_replan_seconds <= 0:
            reader.malformed.append("RESCREEN_SHARD_USERS must be at least 1 and RESCREEN_REPLAN_SECONDS positive")
        return settings
