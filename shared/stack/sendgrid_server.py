"""A local server speaking SendGrid's v3 `POST /v3/mail/send` (the subset the platform uses).

Bearer API key required (401 otherwise); the body is checked like the real API checks it (400 with
`errors[].field`); an accepted message answers 202 with an `X-Message-Id` header and is recorded.
Like the real service, it then posts the message's events (processed, then delivered, or bounce for a
recipient at bounce.test) to the event webhook URL, signed with ECDSA P-256 over timestamp + body
(headers X-Twilio-Email-Event-Webhook-Signature / -Timestamp), retrying until the webhook answers 2xx.
Also like it, events are batched: SendGrid holds them for up to 30 seconds and posts what gathered as
one JSON array; here the window is --event-batch-seconds (1 by default, so tests see statuses soon),
and a batch holds at most MAX_EVENTS_PER_POST events.
Run: python -m shared.stack.sendgrid_server --port N [--event-webhook-url URL --signing-key PEM_FILE
     --event-batch-seconds S]
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
            EVENT_WEBHOOK.add(_events_of(message_id, mail))


# Events in one webhook POST at most (SendGrid caps a batch by size, 768 KB).
MAX_EVENTS_PER_POST = 1000


class _EventWebhook:
    """Gathers the accepted messages' events and posts them in batches."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.key: ec.EllipticCurvePrivateKey | None = None
        self.batch_seconds = 1.0
        self._pending: list[dict] = []
        self._gathered = threading.Condition()

    def start(self, url: str, key: ec.EllipticCurvePrivateKey, batch_seconds: float) -> None:
        self.url, self.key, self.batch_seconds = url, key, batch_seconds
        threading.Thread(target=self._post_batches, daemon=True).start()

    def add(self, events: list[dict]) -> None:
        with self._gathered:
            self._pending.extend(events)
            self._gathered.notify()

    def _post_batches(self) -> None:
        while True:
            with self._gathered:
                self._gathered.wait_for(lambda: self._pending)
            time.sleep(self.batch_seconds)  # the window opens with the first event
            with self._gathered:
                batch, self._pending = self._pending[:MAX_EVENTS_PER_POST], self._pending[MAX_EVENTS_PER_POST:]
            # Each batch retries on its own, so one the webhook refuses (an outage) holds up no other.
            threading.Thread(target=self._post, args=(batch,), daemon=True).start()

    def _post(self, events: list[dict]) -> None:
        body = json.dumps(events)
        timestamp = str(int(time.time()))
        assert self.key is not None and self.url is not None
        signature = base64.b64encode(self.key.sign((timestamp + body).encode(), ec.ECDSA(hashes.SHA256())))
        deliver_callback(self.url, body.encode(), {
            "Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Signature": signature.decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp})


EVENT_WEBHOOK = _EventWebhook()


def _events_of(message_id: str, mail: dict) -> list[dict]:
    """The events SendGrid reports for an accepted message: processed, then delivered or bounce."""
    custom = mail.get("custom_args") or {}
    email = mail["personalizations"][0]["to"][0]["email"]
    outcome = "bounce" if email.endswith("@bounce.test") else "delivered"
    return [{"email": email, "timestamp": int(time.time()), "event": event, "sg_event_id": uuid.uuid4().hex,
             "sg_message_id": f"{message_id}.filterdrecv-local-1", **custom}
            for event in ("processed", outcome)]


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
    parser.add_argument("--event-batch-seconds", type=float, default=1.0,
                        help="how long events gather before one webhook POST carries them")
    args = parser.parse_args()
    if args.event_webhook_url:
        key = serialization.load_pem_private_key(open(args.signing_key, "rb").read(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), "the event webhook signs with an EC P-256 key"
        EVENT_WEBHOOK.start(args.event_webhook_url, key, args.event_batch_seconds)
    make_server(SendGridHandler, args.port).serve_forever()
