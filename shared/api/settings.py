"""The api's settings: who may decide on compliance hits."""

from __future__ import annotations

from dataclasses import dataclass

from shared.api.caller import plausible_email
from shared.events import MAX_NAME_LENGTH
from shared.settings import EnvReader

COMPLIANCE_REVIEWERS = "COMPLIANCE_REVIEWERS"


@dataclass(frozen=True)
class ApiSettings:
    """The principals (Google accounts or service accounts, by email, lower-case) allowed to confirm or
    dismiss a REVIEW hit. Policy, not tuning: a deployment names its reviewers, so the setting has no
    default, and any other caller of the api is refused."""

    compliance_reviewers: frozenset[str]

    @classmethod
    def read(cls, reader: EnvReader) -> ApiSettings:
        """Read COMPLIANCE_REVIEWERS (comma-separated emails), recording what is missing or malformed."""
        text = reader.required(COMPLIANCE_REVIEWERS)
        reviewers = frozenset(email.strip().lower() for email in text.split(",") if email.strip())
        # A reviewer is recorded with each review, in a field of at most MAX_NAME_LENGTH characters.
        bad = sorted(email for email in reviewers if not plausible_email(email) or len(email) > MAX_NAME_LENGTH)
        if bad:
            reader.malformed.append(f"{COMPLIANCE_REVIEWERS}: {', '.join(map(repr, bad))} not email addresses "
                                    f"of at most {MAX_NAME_LENGTH} characters")
        elif text and not reviewers:
            reader.malformed.append(f"{COMPLIANCE_REVIEWERS} names nobody")
        return cls(compliance_reviewers=reviewers)
