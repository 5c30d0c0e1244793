"""Import and cold-start time of each function, next to a bare functions-framework hello.

    make bench        (starts the test stack, measures, stops it)

Import: a fresh interpreter imports the function's main.py (settings validated, nothing connected).
Cold start: from spawning the server to its first answered request: for relay a tick, for settle a
new EscrowCreated (so the first request opens the database pool and the publisher, as production's
first request does), for the api a one-row escrow query, for screen-compliance and notify a new
registration (screen-compliance's reads the part of the stored name index the name reaches), for
refresh-sanctions a tick (download, parse, compare with the latest snapshot, nothing to rescreen).
Also measured, as context: the floor of any function that writes and publishes (tests/bench/floor: its
first request connects, runs one statement and has one message confirmed, with no platform logic). What
a function takes beyond the floor is the platform's own.
Each figure's baseline is the bare hello started in turn with it (one start each, RUNS times): the
machine's pace drifts during a bench (the same function's import varied by up to a third between runs),
and taken in turns both sides of a ratio drift alike.
"""

from __future__ import annotations

import base64
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

from shared.stack.layout import REPO_ROOT
from shared.stack.processes import port_open, spawn, stop_group, wait_until
from shared.stack.stack import Stack
from tests.bench import report
from tests.conftest import TEST_LAYOUT

RUNS = 5
# How often a starting server's port is tried. The stack's 0.2 s rounds every cold start up to the next
# step of 0.2 s, half the hello's own time: tried every 0.2 s, the bare hello read 0.41-0.42 s in 10 runs
# out of 10; tried every 5 ms, 0.27-0.42 s. Trying a closed local port costs microseconds.
PORT_POLL_SECONDS = 0.005
HELLO_SOURCE = REPO_ROOT / "tests/bench/hello/main.py"
FLOOR_SOURCE = REPO_ROOT / "tests/bench/floor/main.py"
FLOOR_TOPIC = "bench.floor"  # no subscription: what the floor publishes is confirmed, then dropped


def _import_seconds(source, env) -> float:
    code = (
        "import importlib.util, time; t = time.perf_counter(); "
        f"spec = importlib.util.spec_from_file_location('main', {str(source)!r}); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def _pubsub_event(body: bytes) -> dict:
    return {"message": {"data": base64.b64encode(body).decode(), "messageId": "bench", "attributes": {}},
            "subscription": "projects/local-escrow/subscriptions/bench"}


def _first_request(port: int, body: bytes | dict | None) -> requests.Response:
    if body is None:  # the api: its first query
        return requests.get(f"http://127.0.0.1:{port}/escrows", params={"limit": 1}, timeout=60)
    if isinstance(body, dict):  # callbacks: a signed Twilio status callback (verified, recorded, 200)
        return requests.post(f"http://127.0.0.1:{port}/twilio/status", data=body["form"], timeout=60,
                             headers={"X-Twilio-Signature": body["signature"]})
    return requests.post(f"http://127.0.0.1:{port}/", json=_pubsub_event(body), timeout=60, headers={
        "ce-id": "bench", "ce-source": "//pubsub.googleapis.com/", "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished"})


def _registration() -> bytes:
    """A new user's UserRegistered envelope."""
    import uuid

    user_id = uuid.uuid4().hex
    return json.dumps({
        "event_id": f"UserRegistered:{user_id}", "event_type": "UserRegistered", "schema_version": 1,
        "occurred_at": "2026-01-01T00:00:00+00:00", "correlation_id": f"UserRegistered:{user_id}",
        "causation_id": None,
        "payload": {"user_id": user_id, "name": "Cold Start", "date_of_birth": "1980-05-05", "country": "NL",
                    "email": f"{user_id}@example.org", "phone": "+31201234567", "wallet_addresses": ["0x" + "5b" * 20],
                    "notification_channels": ["email"], "webhook_url": None,
                    "identity_document": {"type": "passport", "issuing_country": "NL", "expires_on": "2031-01-31",
                                          "number_last4": "0001"}}}).encode()


def _twilio_callback(env: dict) -> dict:
    """A status callback signed as Twilio signs it, with the function's own token and URL."""
    import uuid

    from twilio.request_validator import RequestValidator

    form = {"MessageSid": "SM" + uuid.uuid4().hex, "MessageStatus": "delivered"}
    signature = RequestValidator(env["TWILIO_AUTH_TOKEN"]).compute_signature(env["TWILIO_STATUS_CALLBACK_URL"], form)
    return {"form": form, "signature": signature}


def _cold_start_seconds(target: str, source, env, port: int, body: bytes | dict | None) -> float:
    log = TEST_LAYOUT.logs / f"bench-{target}.log"
    started = time.perf_counter()
    pid = spawn([str(Path(sys.executable).with_name("functions-framework")), f"--target={target}",
                 f"--source={source}", "--host=127.0.0.1", f"--port={port}"], log, env=env, cwd=REPO_ROOT)
    try:
        wait_until(lambda: port_open(port), target, 60, log, pid, poll_seconds=PORT_POLL_SECONDS)
        _first_request(port, body).raise_for_status()
        return time.perf_counter() - started
    finally:
        stop_group(pid)


def _alternated(hello, measured) -> tuple[float, float]:
    """Medians of RUNS hello starts and RUNS `measured` starts, taken in turns, so that a machine slowing
    down or speeding up during the bench moves both sides of a ratio alike."""
    hellos, values = [], []
    for _ in range(RUNS):
        hellos.append(hello())
        values.append(measured())
    return statistics.median(hellos), statistics.median(values)


def main() -> None:
    """Measure and print each figure with the bare-hello baseline and the ratio."""
    stack = Stack(TEST_LAYOUT)
    state = stack.up()
    try:
        _measure(stack, state)
    finally:
        stack.down()


def _measure(stack: Stack, state: dict) -> None:
    base_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "THREADS": "4"}
    from tests.support.events import body, unique_escrow_created

    tick = json.dumps({"source": "bench"}).encode()
    rows = []
    port = TEST_LAYOUT.base_port + 60

    def hello_import() -> float:
        return _import_seconds(HELLO_SOURCE, base_env)

    def hello_cold() -> float:
        return _cold_start_seconds("hello", HELLO_SOURCE, base_env, port, tick)

    stack.admin.create_topic(FLOOR_TOPIC)
    settle = next(function for function in stack.topology.functions if function.name == "settle")
    floor_env = {**base_env, **stack.function_env(settle, state["escrow_address"]), "FLOOR_TOPIC": FLOOR_TOPIC}
    floor_hello, floor_cold = _alternated(
        hello_cold, lambda: _cold_start_seconds("floor", FLOOR_SOURCE, floor_env, port, tick))
    scheduled = {job.topic for job in stack.topology.scheduler_jobs}
    for function in stack.topology.functions:
        env = {**base_env, **stack.function_env(function, state["escrow_address"])}
        source = REPO_ROOT / function.source / "main.py"
        imports = _alternated(hello_import, lambda source=source, env=env: _import_seconds(source, env))
        # HTTP functions get a GET, scheduled ones a tick, registration consumers a new registration
        # (screen-compliance's reads its part of the stored name index), the others an escrow event
        # (assess-margin records it as not its own: the first request still opens the database and writes).
        def payload(function=function, env=env) -> bytes | dict | None:
            if function.name == "callbacks":
                return _twilio_callback(env)
            if function.http:
                return None
            if set(function.trigger_topics) & scheduled:
                return tick
            if "users.registered.v1" in function.trigger_topics:
                return _registration()
            return body(unique_escrow_created())

        colds = _alternated(hello_cold, lambda function=function, source=source, env=env, payload=payload:
                            _cold_start_seconds(function.entry_point, source, env, port, payload()))
        rows.append((function.name, imports, colds))
    print(f"{'':17} {'import s':>9} {'hello s':>8} {'x hello':>8} {'cold start s':>13} {'hello s':>8} "
          f"{'x hello':>8} {'x floor':>8}")
    print(f"{'floor':17} {'':9} {'':8} {'':8} {floor_cold:13.3f} {floor_hello:8.3f} "
          f"{floor_cold / floor_hello:8.1f} {1:8.1f}")
    report.record("cold start floor: connect, one statement, one confirmed publish (vs bare hello)", floor_cold,
                  "s", floor_hello)
    for name, (import_hello, imported), (cold_hello, cold) in rows:
        print(f"{name:17} {imported:9.3f} {import_hello:8.3f} {imported / import_hello:8.1f} {cold:13.3f} "
              f"{cold_hello:8.3f} {cold / cold_hello:8.1f} {cold / floor_cold:8.1f}")
        report.record(f"cold start: {name} (vs bare hello)", cold, "s", cold_hello, target="<= 2")
    print(f"(medians of {RUNS}, each start of a function taken in turn with a start of the bare hello, whose "
          "median is its baseline; cold start = spawn to first answered request, including its work)")


if __name__ == "__main__":
    main()
