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

The messages are declared with protobuf's descriptor API, holding only the fields used here. Their
numbers are those of google/pubsub/v1/pubsub.proto; a field not declared is skipped when parsing, as
protobuf does with any unknown field.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

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

# Protobuf field types and labels (descriptor.proto).
_STRING, _BYTES, _MESSAGE, _BOOL, _INT32 = 9, 12, 11, 8, 5
_OPTIONAL, _REPEATED = 1, 3
_PACKAGE = "google.pubsub.v1"

# message: [(field, number, type, label, message type)], from google/pubsub/v1/pubsub.proto.
_MESSAGES: dict[str, list[tuple[str, int, int, int, str | None]]] = {
    "PubsubMessage": [("data", 1, _BYTES, _OPTIONAL, None),
                      ("attributes", 2, _MESSAGE, _REPEATED, "PubsubMessage.AttributesEntry"),
                      ("message_id", 3, _STRING, _OPTIONAL, None)],
    "PublishRequest": [("topic", 1, _STRING, _OPTIONAL, None),
                       ("messages", 2, _MESSAGE, _REPEATED, "PubsubMessage")],
    "PublishResponse": [("message_ids", 1, _STRING, _REPEATED, None)],
    "PullRequest": [("subscription", 1, _STRING, _OPTIONAL, None),
                    ("return_immediately", 2, _BOOL, _OPTIONAL, None),
                    ("max_messages", 3, _INT32, _OPTIONAL, None)],
    "ReceivedMessage": [("ack_id", 1, _STRING, _OPTIONAL, None),
                        ("message", 2, _MESSAGE, _OPTIONAL, "PubsubMessage")],
    "PullResponse": [("received_messages", 1, _MESSAGE, _REPEATED, "ReceivedMessage")],
    "AcknowledgeRequest": [("subscription", 1, _STRING, _OPTIONAL, None),
                           ("ack_ids", 2, _STRING, _REPEATED, None)],
    "Empty": [],  # google.protobuf.Empty on the wire: no fields
}


@dataclass(frozen=True)
class Method:
    """One RPC: its path, its request and response message names, and the request field routed on."""

    path: str
    request: str
    response: str
    routed_by: str


PUBLISH = Method("/google.pubsub.v1.Publisher/Publish", "PublishRequest", "PublishResponse", "topic")
PULL = Method("/google.pubsub.v1.Subscriber/Pull", "PullRequest", "PullResponse", "subscription")
ACKNOWLEDGE = Method("/google.pubsub.v1.Subscriber/Acknowledge", "AcknowledgeRequest", "Empty", "subscription")


def message_class(name: str) -> Any:
    """The protobuf class of one of the messages above."""
    return _message_classes()[name]


_classes: dict[str, Any] = {}
# Held while the classes are built and while the channel is opened: an instance's first requests come
# at once (several threads), and classes from two builds do not mix (a request refuses a message built
# from the other one's descriptors).
_first_use_lock = threading.Lock()


def _message_classes() -> dict[str, Any]:
    if not _classes:
        with _first_use_lock:
            if not _classes:
                _classes.update(_build_message_classes())
    return _classes


def _build_message_classes() -> dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(name="shared_pubsub_v1.proto", package=_PACKAGE, syntax="proto3")
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        if name == "PubsubMessage":  # map<string, string> attributes = 2
            entry = message.nested_type.add(name="AttributesEntry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=_STRING, label=_OPTIONAL)
            entry.field.add(name="value", number=2, type=_STRING, label=_OPTIONAL)
        for field, number, kind, label, type_name in fields:
            message.field.add(name=field, number=number, type=kind, label=label,
                              type_name=f".{_PACKAGE}.{type_name}" if type_name else None)
    pool = descriptor_pool.DescriptorPool()  # its own pool: the generated clients may register theirs too
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
            for name in _MESSAGES}


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
    return channel.unary_unary(method.path, request_serializer=message_class(method.request).SerializeToString,
                               response_deserializer=message_class(method.response).FromString)


def _routing(method: Method, request: Any) -> tuple[tuple[str, str]]:
    # As api_core writes it: url-encoded, "/" left as it is.
    return (("x-goog-request-params", urlencode({method.routed_by: getattr(request, method.routed_by)}, safe="/")),)


def call_each(method: Method, requests: list[Any], timeout: float) -> list[Any]:
    """The replies to `requests`, in their order, all sent at once on the channel (a thread each took 1.5 ms
    to start); one that fails is sent again by `call`, with its retries, within what is left of `timeout`."""
    import grpc

    deadline = time.monotonic() + timeout
    send = _callable(method, pubsub_emulator_host())
    in_flight = [send.future(request, timeout=timeout, metadata=_routing(method, request)) for request in requests]
    replies = []
    for request, reply in zip(requests, in_flight, strict=True):
        try:
            replies.append(reply.result())
        except grpc.RpcError:
            replies.append(call(method, request, max(deadline - time.monotonic(), LAST_ATTEMPT_SECONDS)))
    return replies


def call(method: Method, request: Any, timeout: float) -> Any:
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
            return _callable(method, emulator)(request, timeout=max(left, 0.001), metadata=routing)
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            left = deadline - time.monotonic()
            if code not in RETRIED_CODES or left < LAST_ATTEMPT_SECONDS:
                raise PublishFailed(f"{method.path} failed with {code}: {details}") from exc
        # Near the deadline the pauses shrink, so that one more attempt still fits.
        time.sleep(min(random.uniform(backoff / 2, backoff), left / 2))
        backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
