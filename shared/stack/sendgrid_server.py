"""A local server speaking SendGrid's v3 `POST /v3/mail/send` (the subset the platform uses).

Bearer API key required (401 otherwise); the body is checked like the real API checks it (400 with
`errors[].field`); an accepted message answers 202 with an `X-Message-Id` header and is recorded.
Run: python -m shared.stack.sendgrid_server --port N
"""

from __future__ import annotations

import argparse
import json
import re
import time
import uuid

from shared.stack.vendor_server import VendorHandler, make_server

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class SendGridHandler(VendorHandler):
    def api_post(self, path: str) -> None:
        if path != "/v3/mail/send":
            return self.reply(404, {"errors": [{"message": "not found"}]})
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            return self.reply(401, {"errors": [{"field": None, "message": "authorization required"}]})
        failure = self.state.next_failure()
        if failure:
            return self.reply(failure, {"errors": [{"field": None, "message": "injected failure"}]})
        try:
            mail = json.loads(self.body())
        except json.JSONDecodeError:
            return self.reply(400, {"errors": [{"field": None, "message": "Bad Request"}]})
        errors = _problems(mail)
        if errors:
            return self.reply(400, {"errors": errors})
        message_id = uuid.uuid4().hex[:22]
        self.state.record({"message_id": message_id, "received_at": time.time(), "mail": mail})
        self.reply(202, None, {"X-Message-Id": message_id})


def _problems(mail: dict) -> list[dict]:
    errors = []
    personalizations = mail.get("personalizations") or []
    if not personalizations:
        errors.append({"field": "personalizations", "message": "The personalizations field is required."})
    for i, personalization in enumerate(personalizations):
        for j, to in enumerate(personalization.get("to") or []):
            if not _EMAIL.match(to.get("email", "")):
                errors.append({"field": f"personalizations.{i}.to.{j}.email",
                               "message": "Does not contain a valid address."})
    if not _EMAIL.match((mail.get("from") or {}).get("email", "")):
        errors.append({"field": "from.email", "message": "The from email does not contain a valid address."})
    if not mail.get("subject"):
        errors.append({"field": "subject", "message": "The subject is required."})
    if not mail.get("content"):
        errors.append({"field": "content", "message": "Content is required."})
    return errors


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    make_server(SendGridHandler, parser.parse_args().port).serve_forever()
