"""The Pub/Sub messages shared/pubsub_transport.py declares read and write the same bytes as
google-cloud-pubsub's generated types, field for field."""

from google.protobuf.timestamp_pb2 import Timestamp
from google.pubsub_v1 import types

from shared.pubsub_transport import message_class


def test_a_publish_request_reads_back_as_the_library_wrote_it():
    ours = message_class("PublishRequest")(topic="projects/p/topics/t", messages=[
        message_class("PubsubMessage")(data=b"\x00{\"a\":1}", attributes={"event_type": "EscrowCreated", "é": "ü"}),
        message_class("PubsubMessage")(data=b"", attributes={})])
    read = types.PublishRequest.deserialize(ours.SerializeToString())
    assert read == types.PublishRequest(topic="projects/p/topics/t", messages=[
        types.PubsubMessage(data=b"\x00{\"a\":1}", attributes={"event_type": "EscrowCreated", "é": "ü"}),
        types.PubsubMessage(data=b"")])


def test_replies_the_library_writes_are_read_with_the_fields_used_and_the_rest_skipped():
    published = types.PublishResponse(message_ids=["1", "22", "333"])
    assert list(message_class("PublishResponse").FromString(types.PublishResponse.serialize(published))
                .message_ids) == ["1", "22", "333"]

    pulled = types.PullResponse(received_messages=[types.ReceivedMessage(
        ack_id="ack-1", delivery_attempt=5, message=types.PubsubMessage(
            data=b"body", attributes={"k": "v"}, message_id="m-1", ordering_key="o",
            publish_time=Timestamp(seconds=1_700_000_000)))])
    read = message_class("PullResponse").FromString(types.PullResponse.serialize(pulled))
    [received] = read.received_messages
    assert (received.ack_id, received.message.message_id, received.message.data, dict(received.message.attributes)) \
        == ("ack-1", "m-1", b"body", {"k": "v"})


def test_pull_and_acknowledge_requests_carry_the_library_field_numbers():
    pull = message_class("PullRequest")(subscription="projects/p/subscriptions/s", max_messages=7,
                                        return_immediately=True)
    assert types.PullRequest.deserialize(pull.SerializeToString()) == types.PullRequest(
        subscription="projects/p/subscriptions/s", max_messages=7, return_immediately=True)
    ack = message_class("AcknowledgeRequest")(subscription="projects/p/subscriptions/s", ack_ids=["a", "b"])
    assert types.AcknowledgeRequest.deserialize(ack.SerializeToString()) == types.AcknowledgeRequest(
        subscription="projects/p/subscriptions/s", ack_ids=["a", "b"])


def test_every_declared_field_has_the_library_number_and_kind():
    for name in ("PubsubMessage", "PublishRequest", "PublishResponse", "PullRequest", "ReceivedMessage",
                 "PullResponse", "AcknowledgeRequest"):
        library = {f.name: (f.number, f.type, f.is_repeated) for f in getattr(types, name).pb().DESCRIPTOR.fields}
        ours = {f.name: (f.number, f.type, f.is_repeated) for f in message_class(name).DESCRIPTOR.fields}
        assert ours, name
        assert {field: library[field] for field in ours} == ours, name
