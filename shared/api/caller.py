"""Who is calling the api: the principal whose Google-signed ID token Cloud Run verified.

The api is IAM-only: terraform/iam.tf grants `roles/run.invoker` to `api_invokers` and never to allUsers,
and `Topology.problems` refuses a public function that authorises callers by identity. So Cloud Run checks
each request's ID token (Google's signature, the audience, the expiry) before the request reaches the
function, and passes the token on with its signature replaced by `SIGNATURE_REMOVED_BY_GOOGLE`: the
function reads the claims of a token already verified, and could not verify the signature itself.

When a request carries both `X-Serverless-Authorization` and `Authorization`, Cloud Run verifies the first
and passes the second through untouched. The identity is therefore read from the header Cloud Run
verified, never from the other one: a caller cannot name someone else in `Authorization`.

Locally nothing stands in front of the api; the tests send tokens shaped as Cloud Run forwards them.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from typing import Protocol

# The header Cloud Run verifies when both are present comes first.
IDENTITY_HEADERS = ("X-Serverless-Authorization", "Authorization")
GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
# Cloud Run refused an expired token already; this only tolerates clocks a little apart.
CLOCK_SKEW_SECONDS = 30
# A Google ID token is about 1 KB; Cloud Run's own limit on a request's headers is far below what a
# longer one would need, so anything longer is refused unread.
MAX_TOKEN_LENGTH = 8192
# RFC 5321's limit on a forward path: no longer address can be a principal.
MAX_EMAIL_LENGTH = 254


class Headers(Protocol):
    """A request's headers: a dict, or werkzeug's (case-insensitive)."""

    def get(self, key: str, /) -> str | None:
        """The header's value, or None."""
        ...


class Unidentified(Exception):
    """The request carries no identity Cloud Run verified; `reason` says what is wrong with it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verified_caller(headers: Headers, now: float | None = None) -> str:
    """The caller's email (lower-case), from the ID token Cloud Run verified; Unidentified if there is none."""
    for name in IDENTITY_HEADERS:
        value = headers.get(name)
        if value is not None:
            return _email(name, value, time.time() if now is None else now)
    raise Unidentified("no identity token (Authorization: Bearer <Google ID token>)")


def _email(header: str, value: str, now: float) -> str:
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unidentified(f"{header} is not a bearer token")
    claims = _claims(header, token.strip())
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise Unidentified(f"{header}'s token was not issued by Google")
    expires = claims.get("exp")
    if (not isinstance(expires, int | float) or isinstance(expires, bool) or not math.isfinite(expires)
            or expires + CLOCK_SKEW_SECONDS < now):
        raise Unidentified(f"{header}'s token has expired or carries no expiry")
    email = claims.get("email")
    if not isinstance(email, str) or not plausible_email(email):
        raise Unidentified(f"{header}'s token names no email (an ID token needs the email scope)")
    if claims.get("email_verified") is not True:
        raise Unidentified(f"{header}'s token carries an email Google has not verified")
    return email.strip().lower()


def _claims(header: str, token: str) -> dict:
    if len(token) > MAX_TOKEN_LENGTH:
        raise Unidentified(f"{header}'s token is longer than {MAX_TOKEN_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise Unidentified(f"{header}'s token is not a JWT")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise Unidentified(f"{header}'s token has unreadable claims") from None
    if not isinstance(claims, dict):
        raise Unidentified(f"{header}'s token has unreadable claims")
    return claims


def plausible_email(email: str) -> bool:
    """A principal's address: something@somewhere, printable, no spaces, at most MAX_EMAIL_LENGTH."""
    local, at, domain = email.strip().rpartition("@")
    return (bool(at and local and domain) and len(email.strip()) <= MAX_EMAIL_LENGTH and email.isprintable()
            and not any(character.isspace() for character in email.strip()))
