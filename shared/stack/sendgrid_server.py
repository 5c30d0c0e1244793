"""A local server speaking SendGrid's v3 `POST /v3/mail/send` (the subset the platform uses).

Bearer API key required (401 otherwise); the body is checked like the real API checks it (400 with
`errors[].field`); an accepted message answers 202 with an `X-Message-Id` header and is recorded.
Like the real service, it then posts the message's events (processed, then delivered, or bounce for a
recipient at bounce.test) to the event webhook URL, signed with ECDSA P-256 over timestamp + body
(headers X-Twilio-Email-Event-Webhook-Signature / -Timestamp), retrying until the webhook answers 2xx.
Run: python -m shared.stack.sendgrid_server --port N [--event-webhook-url URL --signing-key PEM_FILE]
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import threading
import time
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.stack.vendor_server import VendorHandler, deliver_callback, make_server

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class SendGridHandler(VendorHandler):
    def api_post(self, path: str) -> None:
        if path != "/v3/mail/send":
            return self.reply(404, {"errors": [{"message": "not found"}]})
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            return self.reply(401, {"errors": [{"field": None, "message": "authorization required"}]})
        body = self.body()
        failure = self.state.next_failure(body)
        if failure:
            return self.reply(failure, {"errors": [{"field": None, "message": "injected failure"}]})
        try:
            mail = json.loads(body)
        except json.JSONDecodeError:
            return self.reply(400, {"errors": [{"field": None, "message": "Bad Request"}]})
        errors = _problems(mail)
        if errors:
            return self.reply(400, {"errors": errors})
        message_id = uuid.uuid4().hex[:22]
        self.state.record({"message_id": message_id, "received_at": time.time(), "mail": mail})
        self.reply(202, None, {"X-Message-Id": message_id})
        if EVENT_WEBHOOK.url:
            threading.Thread(target=_post_events, args=(message_id, mail), daemon=True).start()


class _EventWebhook:
    url: str | None = None
    key: ec.EllipticCurvePrivateKey | None = None


EVENT_WEBHOOK = _EventWebhook()


def _post_events(message_id: str, mail: dict) -> None:
    custom = mail.get("custom_args") or {}
    email = mail["personalizations"][0]["to"][0]["email"]
    outcome = "bounce" if email.endswith("@bounce.test") else "delivered"
    events = [{"email": email, "timestamp": int(time.time()), "event": event, "sg_event_id": uuid.uuid4().hex,
               "sg_message_id": f"{message_id}.filterdrecv-local-1", **custom}
              for event in ("processed", outcome)]
    body = json.dumps(events)
    timestamp = str(int(time.time()))
    assert EVENT_WEBHOOK.key is not None and EVENT_WEBHOOK.url is not None
    signature = base64.b64encode(EVENT_WEBHOOK.key.sign((timestamp + body).encode(), ec.ECDSA(hashes.SHA256())))
    deliver_callback(EVENT_WEBHOOK.url, body.encode(), {
        "Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Signature": signature.decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp})


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
    parser.add_argument("--event-webhook-url")
    parser.add_argument("--signing-key", help="PEM file of the ECDSA P-256 key that signs the event webhook")
    args = parser.parse_args()
    if args.event_webhook_url:
        EVENT_WEBHOOK.url = args.event_webhook_url
        EVENT_WEBHOOK.key = serialization.load_pem_private_key(open(args.signing_key, "rb").read(), None)
    make_server(SendGridHandler, args.port).serve_forever()
