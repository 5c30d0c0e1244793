"""The api's caller: the email of the ID token Cloud Run verified, read from the header it verified.

Each row is a request as it reaches the function; a bad one is refused with the reason, never taken for
someone."""

from __future__ import annotations

import base64
import time

import pytest

from shared.api.caller import Unidentified, verified_caller
from tests.support.reviewers import forwarded_token

NOW = time.time()


def _bearer(token: str) -> str:
    return f"Bearer {token}"


def _raw_claims(text: bytes) -> str:
    return "e30." + base64.urlsafe_b64encode(text).rstrip(b"=").decode() + ".SIGNATURE_REMOVED_BY_GOOGLE"


def test_the_caller_is_the_verified_tokens_email_in_lower_case():
    assert verified_caller({"Authorization": _bearer(forwarded_token("MLRO@Example.org"))}, NOW) == "mlro@example.org"


def test_a_service_account_is_a_caller_too():
    email = "reviews-bot@my-escrow-project.iam.gserviceaccount.com"
    assert verified_caller({"Authorization": _bearer(forwarded_token(email, iss="accounts.google.com"))}, NOW) == email


def test_the_header_cloud_run_verified_wins_over_the_one_it_passed_through():
    """With both headers, Cloud Run verifies X-Serverless-Authorization and forwards Authorization untouched:
    a name put in Authorization is never taken."""
    headers = {"X-Serverless-Authorization": _bearer(forwarded_token("analyst@example.org")),
               "Authorization": _bearer(forwarded_token("mlro@example.org"))}
    assert verified_caller(headers, NOW) == "analyst@example.org"


BAD = [
    ("no header", {}, "no identity token"),
    ("basic scheme", {"Authorization": "Basic bWxybzpzZWNyZXQ="}, "not a bearer token"),
    ("bearer without a token", {"Authorization": "Bearer "}, "not a bearer token"),
    ("two segments", {"Authorization": "Bearer abc.def"}, "not a JWT"),
    ("claims not base64", {"Authorization": "Bearer e30.%%%.x"}, "unreadable claims"),
    ("claims not JSON", {"Authorization": _bearer(_raw_claims(b"{nope"))}, "unreadable claims"),
    ("claims a list", {"Authorization": _bearer(_raw_claims(b"[1]"))}, "unreadable claims"),
    ("claims not UTF-8", {"Authorization": _bearer(_raw_claims(b"\xff\xfe"))}, "unreadable claims"),
    ("another issuer", {"Authorization": _bearer(forwarded_token("mlro@example.org", iss="https://evil.example"))},
     "not issued by Google"),
    ("expired", {"Authorization": _bearer(forwarded_token("mlro@example.org", exp=int(NOW) - 120))}, "expired"),
    ("no expiry", {"Authorization": _bearer(forwarded_token("mlro@example.org", exp=None))}, "expired"),
    ("expiry a string", {"Authorization": _bearer(forwarded_token("mlro@example.org", exp="9999999999"))},
     "expired"),
    ("expiry NaN", {"Authorization": _bearer(_raw_claims(b'{"iss": "https://accounts.google.com", "exp": NaN, '
                                                        b'"email": "mlro@example.org", "email_verified": true}'))},
     "expired"),
    ("expiry Infinity", {"Authorization": _bearer(_raw_claims(b'{"iss": "https://accounts.google.com", '
                                                             b'"exp": Infinity, "email": "mlro@example.org", '
                                                             b'"email_verified": true}'))}, "expired"),
    ("non-ASCII in the token", {"Authorization": "Bearer e30.\u00e9\u00e9.x"}, "unreadable claims"),
    ("claims nested as deep as the length allows", {"Authorization": _bearer(_raw_claims(b"[" * 6_000))},
     "unreadable claims"),
    ("a token longer than any ID token", {"Authorization": _bearer(_raw_claims(b"[" * 100_000))},
     "longer than 8192 characters"),
    ("expiry a boolean", {"Authorization": _bearer(forwarded_token("mlro@example.org", exp=True))}, "expired"),
    ("no email (no email scope)", {"Authorization": _bearer(forwarded_token(None))}, "names no email"),
    ("email a list", {"Authorization": _bearer(forwarded_token(["mlro@example.org"]))}, "names no email"),
    ("email without a domain", {"Authorization": _bearer(forwarded_token("mlro@"))}, "names no email"),
    ("email with a NUL", {"Authorization": _bearer(forwarded_token("mlro\x00@example.org"))}, "names no email"),
    ("email with a space", {"Authorization": _bearer(forwarded_token("ml ro@example.org"))}, "names no email"),
    ("email unverified", {"Authorization": _bearer(forwarded_token("mlro@example.org", email_verified=False))},
     "not verified"),
    ("email_verified a string", {"Authorization": _bearer(forwarded_token("mlro@example.org",
                                                                          email_verified="true"))}, "not verified"),
    ("verified header broken, other header fine",
     {"X-Serverless-Authorization": "Bearer junk", "Authorization": _bearer(forwarded_token("mlro@example.org"))},
     "X-Serverless-Authorization's token is not a JWT"),
]


@pytest.mark.parametrize("name, headers, reason", BAD, ids=[row[0] for row in BAD])
def test_a_request_without_a_usable_verified_identity_is_refused_with_the_reason(name, headers, reason):
    with pytest.raises(Unidentified, match=reason):
        verified_caller(headers, NOW)
