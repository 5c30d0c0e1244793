"""Does the Pub/Sub emulator lose push messages when the subscription has a retry policy?

    PUBSUB_EMULATOR_HOST=127.0.0.1:19401 .venv/bin/python -m tests.support.emulator_retry_probe

A push endpoint answers 503 for its first OUTAGE_SECONDS (a database outage), then 200. Eight messages
are published onto each of two subscriptions, one with the manifest's retry policy (10 s to 600 s)
and one without; after the outage the probe waits and counts, per subscription, the messages that
reached the endpoint with a 200 and those that were dead-lettered. Nothing lost means 8 + 0 = 8.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

OUTAGE_SECONDS = 20
WAIT_AFTER_SECONDS = 120
MESSAGES = 8


def main() -> None:
    host = os.environ["PUBSUB_EMULATOR_HOST"]
    base = f"http://{host}/v1/projects/local-escrow"
    started = time.monotonic()
    delivered: dict[str, set] = {"with-policy": set(), "without-policy": set()}
    attempts = {label: 0 for label in delivered}

    class Endpoint(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            push = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            label = self.path.strip("/")
            attempts[label] += 1
            if time.monotonic() - started < OUTAGE_SECONDS:
                self.send_response(503)
            else:
                delivered[label].add(base64.b64decode(push["message"]["data"]).decode())
                self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run = uuid.uuid4().hex[:8]
    topic, dlq = f"probe-{run}", f"probe-{run}-dlq"
    for name in (topic, dlq):
        requests.put(f"{base}/topics/{name}", json={}, timeout=10).raise_for_status()
    requests.put(f"{base}/subscriptions/{dlq}-hold", json={"topic": f"projects/local-escrow/topics/{dlq}"},
                 timeout=10).raise_for_status()
    for label in delivered:
        body = {"topic": f"projects/local-escrow/topics/{topic}", "ackDeadlineSeconds": 60,
                "pushConfig": {"pushEndpoint": f"http://127.0.0.1:{server.server_port}/{label}"},
                "deadLetterPolicy": {"deadLetterTopic": f"projects/local-escrow/topics/{dlq}",
                                     "maxDeliveryAttempts": 10}}
        if label == "with-policy":
            body["retryPolicy"] = {"minimumBackoff": "10s", "maximumBackoff": "600s"}
        requests.put(f"{base}/subscriptions/{topic}-{label}", json=body, timeout=10).raise_for_status()
    messages = [{"data": base64.b64encode(f"m{i}".encode()).decode()} for i in range(MESSAGES)]
    requests.post(f"{base}/topics/{topic}:publish", json={"messages": messages}, timeout=10).raise_for_status()
    time.sleep(OUTAGE_SECONDS + WAIT_AFTER_SECONDS)
    pulled = requests.post(f"{base}/subscriptions/{dlq}-hold:pull", json={"maxMessages": 100}, timeout=30).json()
    dead = len(pulled.get("receivedMessages", []))
    for label, seen in delivered.items():
        print(f"{label:15} delivered {len(seen)}/{MESSAGES} after {attempts[label]} pushes")
    print(f"dead-lettered (both subscriptions): {dead}")
    server.shutdown()


if __name__ == "__main__":
    main()
