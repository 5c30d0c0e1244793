"""Identity tokens as Cloud Run forwards them to the api: Google's ID token, verified at the front door,
its signature replaced by `SIGNATURE_REMOVED_BY_GOOGLE` (shared/api/caller.py)."""

from __future__ import annotations

import base64
import json
import time

from shared.stack.stack import LOCAL_COMPLIANCE_REVIEWERS

MLRO, ANALYST = LOCAL_COMPLIANCE_REVIEWERS


def _segment(document: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def forwarded_token(email: str | None, **claims) -> str:
    """An ID token for `email`, as Cloud Run hands it on; `claims` override or add claims."""
    now = int(time.time())
    body = {"iss": "https://accounts.google.com", "aud": "https://api.escrow.local", "sub": "1" * 21,
            "email": email, "email_verified": True, "iat": now, "exp": now + 3600, **claims}
    return ".".join((_segment({"alg": "RS256", "kid": "local", "typ": "JWT"}), _segment(body),
                     "SIGNATURE_REMOVED_BY_GOOGLE"))


def as_caller(email: str = MLRO, **claims) -> dict[str, str]:
    """The headers of a request `email` makes through Cloud Run."""
    return {"Authorization": f"Bearer {forwarded_token(email, **claims)}"}
