"""Pub/Sub's v1 gRPC API called over a bare gRPC channel: the three calls the functions make.

Why not google-cloud-pubsub's generated clients (measured on this machine against the emulator, the
two alternated in one run):
- a fresh process took 0.32 s (0.31-0.34, 7 runs) to import them and have one Publish confirmed, and
  0.12 s (0.11-0.14) here. A function pays that on its first publish, inside its cold start, where
  the bare functions-framework hello starts in 0.27-0.40 s;
- a confirmed one-message Publish took 0.87-0.93 ms (0.40-0.45 ms of CPU) through the clients'
  wrappers (retry, timeout, interceptor, proto-plus marshalling), and 0.68-0.84 ms (0.31-0.33 ms of
  CPU) here, 1,000 of each, three times.

What the generated clients did for these calls is kept:
- the channel honours PUBSUB_EMULATOR_HOST (an insecure channel to it), and otherwise uses TLS to
  pubsub.googleapis.com with Application Default Credentials, refreshed by google-auth;
- the same channel options, and the `x-goog-request-params` routing header;
- retries of the codes api_core's default predicate deems transient (UNAVAILABLE, INTERNAL,
  RESOURCE_EXHAUSTED), backing off from 0.1 s to 2 s, within the caller's timeout.
google-cloud-pubsub stays a dependency: it pins grpcio, protobuf and google-auth to versions that speak
this API, and the operator's dead-letter replay tool uses its clients.

The requests and replies are written and read by shared/pubsub_wire.py, in protobuf's wire format,
without protobuf's classes (building them took 0.015-0.018 s of every instance's first call).
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from shared import pubsub_wire
from shared.errors import PublishFailed
from shared.settings import pubsub_emulator_host

ENDPOINT = "pubsub.googleapis.com:443"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/pubsub")
# As google-cloud-pubsub 2.44's transports set them.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_metadata_size", 4 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30000),
]
RETRIED_CODES = frozenset({"UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED"})
FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 2.0
# Less time than this left: the last failure is final (an attempt needs a round trip at least).
LAST_ATTEMPT_SECONDS = 0.05


@dataclass(frozen=True)
class Method:
    """One RPC: its path, the request field it is routed on, and how its reply's bytes are read
    (shared/pubsub_wire.py writes the requests)."""

    path: str
    routed_by: str
    read_reply: Callable[[bytes], Any]


PUBLISH = Method("/google.pubsub.v1.Publisher/Publish", "topic", pubsub_wire.publish_response)
PULL = Method("/google.pubsub.v1.Subscriber/Pull", "subscription", pubsub_wire.pull_response)
ACKNOWLEDGE = Method("/google.pubsub.v1.Subscriber/Acknowledge", "subscription", pubsub_wire.empty)

# Held while the channel is opened: an instance's first requests come at once (several threads), and
# they share one channel.
_first_use_lock = threading.Lock()


@functools.cache
def _channel(emulator: str | None) -> Any:
    """The instance's channel to the emulator at `emulator`, or to Pub/Sub; opened (and gRPC imported) on
    first use."""
    import grpc

    if emulator:
        return grpc.insecure_channel(emulator, options=CHANNEL_OPTIONS)
    import google.auth
    from google.auth.transport.grpc import secure_authorized_channel
    from google.auth.transport.requests import Request

    credentials, _ = google.auth.default(scopes=SCOPES)
    return secure_authorized_channel(credentials, Request(), ENDPOINT, options=CHANNEL_OPTIONS)


@functools.cache
def _callable(method: Method, emulator: str | None) -> Any:
    with _first_use_lock:  # one channel per instance, also when its first calls come at once
        channel = _channel(emulator)
    # The requests go as the bytes pubsub_wire wrote (no serializer), the replies are read by the method.
    return channel.unary_unary(method.path, response_deserializer=method.read_reply)


@dataclass(frozen=True)
class Request:
    """A request's bytes, and the name it is routed by (its topic or subscription)."""

    routed_to: str
    body: bytes


def _routing(method: Method, request: Request) -> tuple[tuple[str, str]]:
    # As api_core writes it: url-encoded, "/" left as it is.
    return (("x-goog-request-params", urlencode({method.routed_by: request.routed_to}, safe="/")),)


def call_each(method: Method, requests: list[Request], timeout: float) -> list[Any]:
    """The replies to `requests`, in their order, all sent at once on the channel (a thread each took 1.5 ms
    to start); one that fails is sent again by `call`, with its retries, within what is left of `timeout`."""
    import grpc

    deadline = time.monotonic() + timeout
    send = _callable(method, pubsub_emulator_host())
    in_flight = [send.future(request.body, timeout=timeout, metadata=_routing(method, request))
                 for request in requests]
    replies = []
    for request, reply in zip(requests, in_flight, strict=True):
        try:
            replies.append(reply.result())
        except grpc.RpcError:
            replies.append(call(method, request, max(deadline - time.monotonic(), LAST_ATTEMPT_SECONDS)))
    return replies


def call(method: Method, request: Request, timeout: float) -> Any:
    """Send `request` and return the reply; retry transient failures until `timeout` seconds have passed,
    then raise PublishFailed with the last status."""
    import grpc

    deadline = time.monotonic() + timeout
    emulator = pubsub_emulator_host()
    routing = _routing(method, request)
    backoff = FIRST_BACKOFF_SECONDS
    while True:
        left = deadline - time.monotonic()
        try:
            return _callable(method, emulator)(request.body, timeout=max(left, 0.001), metadata=routing)
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            left = deadline - time.monotonic()
            if code not in RETRIED_CODES or left < LAST_ATTEMPT_SECONDS:
                raise PublishFailed(f"{method.path} failed with {code}: {details}") from exc
        # Near the deadline the pauses shrink, so that one more attempt still fits.
        time.sleep(min(random.uniform(backoff / 2, backoff), left / 2))
        backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
