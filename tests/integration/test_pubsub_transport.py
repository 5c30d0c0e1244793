"""shared/pubsub_transport.py against a local gRPC server that answers Pub/Sub's Publish as a failing Pub/Sub
would: which failures are retried, for how long, and what each call carries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
import pytest
from google.protobuf.empty_pb2 import Empty
from google.pubsub_v1 import types

from shared.errors import PublishFailed
from shared.pubsub import OutgoingMessage, acknowledge, publish_all, pull_each_now
from shared.stack.layout import REPO_ROOT


class ScriptedPublisher:
    """Answers each Publish with the next status of `failures`, then with message ids; records what came."""

    def __init__(self, failures: list[grpc.StatusCode], hang: bool = False) -> None:
        self.failures = list(failures)
        self.hang = hang
        self.calls: list[tuple[float, dict[str, str], object]] = []
        self.lock = threading.Lock()

    def publish(self, request, context):
        with self.lock:
            self.calls.append((time.monotonic(), dict(context.invocation_metadata()), request))
            failure = self.failures.pop(0) if self.failures else None
        if self.hang:
            time.sleep(5)
        if failure is not None:
            context.abort(failure, f"scripted {failure.name}")
        return types.PublishResponse(message_ids=[f"id-{n}" for n in range(len(request.messages))])


@contextmanager
def _scripted(service: str, method: str, answer, read_request, write_reply, monkeypatch) -> Iterator[None]:
    """A local gRPC server whose `service`/`method` is `answer`, as the emulator the transport talks to; it
    reads and writes the messages with google-cloud-pubsub's types."""
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(f"google.pubsub.v1.{service}", {
        method: grpc.unary_unary_rpc_method_handler(answer, request_deserializer=read_request,
                                                    response_serializer=write_reply)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{port}")
    try:
        yield
    finally:
        server.stop(0)


def serving(publisher: ScriptedPublisher, monkeypatch):
    return _scripted("Publisher", "Publish", publisher.publish, types.PublishRequest.deserialize,
                     types.PublishResponse.serialize, monkeypatch)


MESSAGES = [OutgoingMessage("escrows", b'{"n":1}', {"event_type": "EscrowCreated"}),
            OutgoingMessage("escrows", b'{"n":2}', {})]


def test_transient_failures_are_retried_with_backoff_and_the_ids_come_back(monkeypatch):
    publisher = ScriptedPublisher([grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                                   grpc.StatusCode.RESOURCE_EXHAUSTED])
    with serving(publisher, monkeypatch):
        assert publish_all("proj", MESSAGES, timeout=10) == ["id-0", "id-1"]
    assert len(publisher.calls) == 4
    times = [at for at, _, _ in publisher.calls]
    assert all(later - earlier >= 0.04 for earlier, later in zip(times, times[1:], strict=False)), times
    for _, metadata, request in publisher.calls:  # every attempt: the same request, routed by its topic
        assert metadata["x-goog-request-params"] == "topic=projects/proj/topics/escrows"
        assert request.topic == "projects/proj/topics/escrows"
        assert [(m.data, dict(m.attributes)) for m in request.messages] == [
            (b'{"n":1}', {"event_type": "EscrowCreated"}), (b'{"n":2}', {})]


@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
                                  grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED])
def test_a_refusal_fails_at_once_with_its_status(monkeypatch, code):
    publisher = ScriptedPublisher([code])
    with serving(publisher, monkeypatch):
        started = time.monotonic()
        with pytest.raises(PublishFailed, match=f"failed with {code.name}: scripted {code.name}"):
            publish_all("proj", MESSAGES, timeout=10)
        assert time.monotonic() - started < 1
    assert len(publisher.calls) == 1


def test_an_endpoint_that_stays_unavailable_fails_within_the_timeout(monkeypatch):
    publisher = ScriptedPublisher([grpc.StatusCode.UNAVAILABLE] * 1000)
    with serving(publisher, monkeypatch):
        started = time.monotonic()
        with pytest.raises(PublishFailed, match="failed with UNAVAILABLE"):
            publish_all("proj", MESSAGES, timeout=2)
        took = time.monotonic() - started
    assert 1.5 < took < 2.5, took  # it kept trying until the timeout was nearly spent, and not beyond
    assert 5 <= len(publisher.calls) <= 30  # backing off, not spinning


def test_an_endpoint_that_never_answers_fails_at_the_timeout(monkeypatch):
    publisher = ScriptedPublisher([], hang=True)
    with serving(publisher, monkeypatch):
        started = time.monotonic()
        with pytest.raises(PublishFailed, match="DEADLINE_EXCEEDED"):
            publish_all("proj", MESSAGES, timeout=1)
        assert time.monotonic() - started < 2


FIRST_CALLS_AT_ONCE = """
import sys, threading
from shared.pubsub import OutgoingMessage, acknowledge, publish_all, pull_each_now
start, results = threading.Barrier(8), []
def first_publish():
    start.wait()
    results.append(publish_all("proj", [OutgoingMessage("escrows", b"x", {})], 10))
threads = [threading.Thread(target=first_publish) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
print(len(results), "google.protobuf" in sys.modules)
"""


def test_an_instances_first_publishes_at_once_all_succeed(monkeypatch):
    """A fresh instance takes several requests at once (THREADS): their first publishes open the channel
    together, and none fails for it. Nor do they load protobuf (shared/pubsub_wire.py writes the bytes)."""
    publisher = ScriptedPublisher([])
    with serving(publisher, monkeypatch):
        for _ in range(3):  # a fresh interpreter each time: nothing built yet
            out = subprocess.run([sys.executable, "-c", FIRST_CALLS_AT_ONCE], capture_output=True, text=True,
                                 timeout=60, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
            assert out.returncode == 0 and out.stdout.split() == ["8", "False"], (out.stdout, out.stderr[-2000:])
    assert len(publisher.calls) == 24


def test_without_the_emulator_the_channel_is_tls_to_pubsub_with_application_default_credentials(
        monkeypatch, tmp_path):
    """Production's channel is built as deployed (a service account's key standing in for the metadata
    server's credentials): nothing is sent until a call, so this checks the construction only."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from shared import pubsub_transport

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    account = tmp_path / "account.json"
    account.write_text(json.dumps({"type": "service_account", "project_id": "proj", "private_key_id": "1",
                                   "private_key": key, "client_email": "fn@proj.iam.gserviceaccount.com",
                                   "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}))
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(account))
    pubsub_transport._channel.cache_clear()
    try:
        channel = pubsub_transport._channel(None)
        assert isinstance(channel, grpc.Channel)
    finally:
        pubsub_transport._channel.cache_clear()


class ScriptedSubscriber:
    """Answers each Pull with the next status scripted for its subscription, then with one message naming it."""

    def __init__(self, failures: dict[str, list[grpc.StatusCode]]) -> None:
        self.failures = {name: list(codes) for name, codes in failures.items()}
        self.pulls: list[str] = []
        self.lock = threading.Lock()

    def pull(self, request, context):
        name = request.subscription.rsplit("/", 1)[-1]
        with self.lock:
            self.pulls.append(name)
            failure = self.failures.get(name, []).pop(0) if self.failures.get(name) else None
        if failure is not None:
            context.abort(failure, f"scripted {failure.name}")
        message = types.PubsubMessage(data=name.encode(), message_id=f"m-{name}")
        return types.PullResponse(received_messages=[
            types.ReceivedMessage(ack_id=f"ack-{name}", message=message)] if name != "empty" else [])


def subscribing(subscriber: ScriptedSubscriber, monkeypatch):
    return _scripted("Subscriber", "Pull", subscriber.pull, types.PullRequest.deserialize, types.PullResponse.serialize,
                     monkeypatch)


def test_subscriptions_pulled_at_once_come_back_in_order_and_a_transient_failure_is_retried(monkeypatch):
    subscriber = ScriptedSubscriber({"flaky": [grpc.StatusCode.UNAVAILABLE]})
    with subscribing(subscriber, monkeypatch):
        pulled = pull_each_now("proj", ["first", "empty", "flaky", "last"], 100, timeout=10)
    assert [[message.data for message in messages] for messages in pulled] == [[b"first"], [], [b"flaky"], [b"last"]]
    assert pulled[0][0].ack_id == "ack-first" and pulled[0][0].message_id == "m-first"
    assert sorted(subscriber.pulls) == ["empty", "first", "flaky", "flaky", "last"]


def test_a_subscription_that_cannot_be_pulled_fails_the_pull_at_once_naming_the_subscriptions(monkeypatch):
    subscriber = ScriptedSubscriber({"gone": [grpc.StatusCode.NOT_FOUND] * 2})
    with subscribing(subscriber, monkeypatch):
        started = time.monotonic()
        with pytest.raises(PublishFailed, match="pull from first, gone failed: .*NOT_FOUND"):
            pull_each_now("proj", ["first", "gone"], 100, timeout=10)
        assert time.monotonic() - started < 1


def test_an_acknowledge_carries_the_ack_ids_and_its_empty_reply_is_read(monkeypatch):
    """Acknowledge answers google.protobuf.Empty: zero bytes, which must read as a reply, not as a failure."""
    acknowledged = []

    def answer(request, context):
        acknowledged.append((request.subscription, list(request.ack_ids), dict(context.invocation_metadata())))
        return Empty()

    with _scripted("Subscriber", "Acknowledge", answer, types.AcknowledgeRequest.deserialize,
                   Empty.SerializeToString, monkeypatch):
        acknowledge("proj", "hold", ["ack-1", "ack-2"], timeout=5)
    [(subscription, ack_ids, metadata)] = acknowledged
    assert (subscription, ack_ids) == ("projects/proj/subscriptions/hold", ["ack-1", "ack-2"])
    assert metadata["x-goog-request-params"] == "subscription=projects/proj/subscriptions/hold"
