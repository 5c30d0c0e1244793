"""The bytes of the Pub/Sub v1 messages the functions send and read, in protobuf's wire format.

Why not protobuf's own classes: building them (descriptor_pb2, the descriptor pool, the message
factory) took 0.015-0.018 s of every instance's first publish or pull, a tenth of the bare
functions-framework hello's whole cold start, measured on this machine in the reconciler's first run.
Encoding these few messages by hand takes none of that. It is also no slower: a PublishRequest of 1,000
messages (700 bytes and three attributes each) took 1.8 ms by hand and 2.4-3.0 ms through protobuf's
classes (the median of 30, alternated). tests/unit/test_pubsub_wire.py checks every message against
google-cloud-pubsub's own types.

The wire format (protobuf's encoding guide): a message is a sequence of fields, each a key (field
number << 3 | wire type, as a varint) and a value: a varint (wire type 0), 8 bytes (1), a length-prefixed
run of bytes (2: strings, bytes, nested messages, map entries, each element of a repeated one), or 4
bytes (5). Field numbers are those of google/pubsub/v1/pubsub.proto. A field not read here (a message's
publish_time or ordering_key, a delivery attempt) is skipped, as protobuf skips any field it does not know.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10
_ONE_BYTE_VARINTS = [bytes((value,)) for value in range(0x80)]
# The keys of length-delimited fields 1 and 2, the only field numbers the messages written here use for them.
_FIELD_1, _FIELD_2 = bytes((1 << 3 | _LENGTH_DELIMITED,)), bytes((2 << 3 | _LENGTH_DELIMITED,))


class Received(NamedTuple):
    """One message of a PullResponse: what acknowledging it takes, and the message."""

    ack_id: str
    message_id: str
    data: bytes
    attributes: dict[str, str]


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE_VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its key (one of the _FIELD_* bytes), the payload's length, the payload."""
    return key + _varint(len(payload)) + payload


def _pubsub_message(data: bytes, attributes: Mapping[str, str], entries: dict[tuple[str, str], bytes]) -> bytes:
    # PubsubMessage: bytes data = 1; map<string, string> attributes = 2 (each entry: key = 1, value = 2).
    # `entries` holds the attributes already encoded in this request: most repeat from message to message.
    parts = [_length_delimited(_FIELD_1, data)] if data else []
    for item in attributes.items():
        entry = entries.get(item)
        if entry is None:
            entry = entries[item] = _length_delimited(_FIELD_2, _length_delimited(_FIELD_1, item[0].encode())
                                                      + _length_delimited(_FIELD_2, item[1].encode()))
        parts.append(entry)
    return b"".join(parts)


def publish_request(topic: str, messages: Iterable[tuple[bytes, Mapping[str, str]]]) -> bytes:
    """PublishRequest: string topic = 1; repeated PubsubMessage messages = 2."""
    entries: dict[tuple[str, str], bytes] = {}
    return b"".join([_length_delimited(_FIELD_1, topic.encode()),
                     *(_length_delimited(_FIELD_2, _pubsub_message(data, attributes, entries))
                       for data, attributes in messages)])


def pull_request(subscription: str, max_messages: int, return_immediately: bool) -> bytes:
    """PullRequest: string subscription = 1; bool return_immediately = 2; int32 max_messages = 3."""
    if not 0 < max_messages < 2**31:
        raise ValueError(f"max_messages must be a positive int32, not {max_messages}")
    # Fields 2 and 3 are varints: their keys are 2 << 3 | 0 and 3 << 3 | 0.
    return (_length_delimited(_FIELD_1, subscription.encode()) + (b"\x10\x01" if return_immediately else b"")
            + b"\x18" + _varint(max_messages))


def acknowledge_request(subscription: str, ack_ids: Iterable[str]) -> bytes:
    """AcknowledgeRequest: string subscription = 1; repeated string ack_ids = 2."""
    return b"".join([_length_delimited(_FIELD_1, subscription.encode()),
                     *(_length_delimited(_FIELD_2, ack_id.encode()) for ack_id in ack_ids)])


def publish_response(body: bytes) -> list[str]:
    """PublishResponse: repeated string message_ids = 1."""
    return [value.decode() for number, value in _fields(body) if number == 1 and isinstance(value, bytes)]


def pull_response(body: bytes) -> list[Received]:
    """PullResponse: repeated ReceivedMessage received_messages = 1; each: string ack_id = 1,
    PubsubMessage message = 2."""
    received = []
    for number, value in _fields(body):
        if number != 1 or not isinstance(value, bytes):
            continue
        ack_id, message = "", b""
        for field, part in _fields(value):
            if field == 1 and isinstance(part, bytes):
                ack_id = part.decode()
            elif field == 2 and isinstance(part, bytes):
                message = part
        received.append(Received(ack_id, *_read_pubsub_message(message)))
    return received


def _read_pubsub_message(body: bytes) -> tuple[str, bytes, dict[str, str]]:
    """PubsubMessage's message_id (3), data (1) and attributes (2, each entry: key = 1, value = 2)."""
    message_id, data, attributes = "", b"", {}
    for number, value in _fields(body):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            data = value
        elif number == 2:
            entry = dict(_fields(value))
            key, entry_value = entry.get(1, b""), entry.get(2, b"")
            if isinstance(key, bytes) and isinstance(entry_value, bytes):
                attributes[key.decode()] = entry_value.decode()
        elif number == 3:
            message_id = value.decode()
    return message_id, data, attributes


def empty(body: bytes) -> bool:
    """google.protobuf.Empty (Acknowledge's reply): nothing to read; its fields, if any, are checked to parse.
    True: gRPC takes a reader's None for a reply it could not read (INTERNAL, "Exception deserializing")."""
    for _ in _fields(body):
        pass
    return True


def _fields(body: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of a message, in order: a varint or fixed-width value as an int, a
    length-delimited one as its bytes. ValueError on bytes that are not a well-formed message."""
    position, end = 0, len(body)
    while position < end:
        key, position = _read_varint(body, position)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ValueError("a protobuf field numbered 0")
        value: int | bytes
        if wire_type == _VARINT:
            value, position = _read_varint(body, position)
        elif wire_type == _LENGTH_DELIMITED:
            length, position = _read_varint(body, position)
            if position + length > end:
                raise ValueError("a protobuf field runs past the end of its message")
            value, position = body[position:position + length], position + length
        elif wire_type in (_FIXED64, _FIXED32):
            width = 8 if wire_type == _FIXED64 else 4
            if position + width > end:
                raise ValueError("a protobuf field runs past the end of its message")
            value, position = int.from_bytes(body[position:position + width], "little"), position + width
        else:  # 3 and 4 are proto2's groups, which no Pub/Sub message has; 6 and 7 do not exist
            raise ValueError(f"protobuf wire type {wire_type} is not one Pub/Sub's messages use")
        yield number, value


def _read_varint(body: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    for index in range(position, min(position + _MAX_VARINT_BYTES, len(body))):
        byte = body[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, index + 1
        shift += 7
    raise ValueError("a protobuf varint is cut off or longer than 10 bytes")
