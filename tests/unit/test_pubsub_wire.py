"""shared/pubsub_wire.py writes and reads the same messages as google-cloud-pubsub's generated types: each
request it writes is read back by the library field for field, and each reply the library writes is read
here, the fields not used skipped. Also: bytes that are not a message are refused."""

from __future__ import annotations

import random

import pytest
from google.protobuf.empty_pb2 import Empty
from google.protobuf.timestamp_pb2 import Timestamp
from google.pubsub_v1 import types

from shared import pubsub_wire

# Lengths around each varint boundary (127/128, 16383/16384) and beyond: a length prefix of 1, 2 and 3 bytes.
LENGTHS = [0, 1, 127, 128, 129, 300, 16383, 16384, 70_000]
ATTRIBUTES = [{}, {"event_type": "EscrowCreated"}, {"é": "ü", "": "", "k" * 200: "v" * 20_000},
              {"event_id": "EscrowCreated:1:0xabc", "schema_version": "1", "redrive": "3"}]


def _random_messages(count: int, seed: int) -> list[tuple[bytes, dict[str, str]]]:
    rng = random.Random(seed)
    return [(rng.randbytes(rng.choice(LENGTHS)), rng.choice(ATTRIBUTES)) for _ in range(count)]


def test_a_publish_request_reads_back_as_the_library_wrote_it():
    messages = [(b"\x00{\"a\":1}", {"event_type": "EscrowCreated", "é": "ü"}), (b"", {"only": "attributes"})]
    messages += _random_messages(200, seed=1)
    read = types.PublishRequest.deserialize(pubsub_wire.publish_request("projects/p/topics/t", messages))
    assert read == types.PublishRequest(topic="projects/p/topics/t", messages=[
        types.PubsubMessage(data=data, attributes=attributes) for data, attributes in messages])


def test_pull_and_acknowledge_requests_read_back_as_the_library_wrote_them():
    for max_messages in (1, 100, 127, 128, 1000, 2**31 - 1):
        for immediately in (True, False):
            assert types.PullRequest.deserialize(pubsub_wire.pull_request(
                "projects/p/subscriptions/s", max_messages, immediately)) == types.PullRequest(
                subscription="projects/p/subscriptions/s", max_messages=max_messages, return_immediately=immediately)
    ack_ids = ["a", "b" * 300, "ü"]
    assert types.AcknowledgeRequest.deserialize(pubsub_wire.acknowledge_request(
        "projects/p/subscriptions/s", ack_ids)) == types.AcknowledgeRequest(
        subscription="projects/p/subscriptions/s", ack_ids=ack_ids)


@pytest.mark.parametrize("max_messages", [0, -1, 2**31])
def test_a_pull_request_outside_int32_or_for_nothing_is_refused(max_messages):
    with pytest.raises(ValueError, match="positive int32"):
        pubsub_wire.pull_request("projects/p/subscriptions/s", max_messages, True)


def test_replies_the_library_writes_are_read_with_the_fields_used_and_the_rest_skipped():
    assert pubsub_wire.publish_response(types.PublishResponse.serialize(
        types.PublishResponse(message_ids=["1", "22", "3" * 200]))) == ["1", "22", "3" * 200]
    assert pubsub_wire.publish_response(b"") == []

    messages = _random_messages(50, seed=2)
    pulled = types.PullResponse(received_messages=[types.ReceivedMessage(
        ack_id=f"ack-{n}", delivery_attempt=n + 1, message=types.PubsubMessage(  # delivery_attempt: not read
            data=data, attributes=attributes, message_id=f"m-{n}", ordering_key="o",  # ordering_key: not read
            publish_time=Timestamp(seconds=1_700_000_000, nanos=5)))  # publish_time: not read
        for n, (data, attributes) in enumerate(messages)])
    assert pubsub_wire.pull_response(types.PullResponse.serialize(pulled)) == [
        pubsub_wire.Received(f"ack-{n}", f"m-{n}", data, attributes) for n, (data, attributes) in enumerate(messages)]
    assert pubsub_wire.pull_response(b"") == []
    assert pubsub_wire.empty(Empty().SerializeToString()) is True  # never None: gRPC reads None as a failure


def test_fields_of_every_wire_type_the_reader_does_not_know_are_skipped():
    unknown = (b"\x28\x96\x01"  # field 5, varint 150
               + b"\x31" + bytes(8)  # field 6, fixed 64 bits
               + b"\x3d" + bytes(4)  # field 7, fixed 32 bits
               + b"\x42\x03abc")  # field 8, 3 bytes
    reply = types.PublishResponse.serialize(types.PublishResponse(message_ids=["x"]))
    assert pubsub_wire.publish_response(unknown + reply + unknown) == ["x"]
    pubsub_wire.empty(unknown)


@pytest.mark.parametrize(("body", "problem"), [
    (b"\x0a\x05abc", "runs past the end"),  # a length beyond the message
    (b"\x0a", "cut off"),  # a key with no length
    (b"\x0a\xff", "cut off"),  # a length whose varint never ends
    (b"\x08" + b"\xff" * 11, "cut off or longer than 10 bytes"),  # a varint too long
    (b"\x31\x00\x00", "runs past the end"),  # fixed 64 bits cut short
    (b"\x0b", "wire type 3"),  # a group start
    (b"\x0e", "wire type 6"),  # no such wire type
    (b"\x02\x00", "numbered 0"),
])
def test_bytes_that_are_not_a_message_are_refused(body, problem):
    for read in (pubsub_wire.publish_response, pubsub_wire.pull_response, pubsub_wire.empty):
        with pytest.raises(ValueError, match=problem):
            read(body)

