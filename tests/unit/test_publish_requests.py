"""How publish_all groups messages into Publish requests: per topic, in order, within Pub/Sub's limits."""

from shared import pubsub
from shared.pubsub import OutgoingMessage, _requests


def test_messages_go_per_topic_in_order():
    messages = [OutgoingMessage("a", b"1", {}), OutgoingMessage("b", b"2", {}), OutgoingMessage("a", b"3", {"k": "v"})]
    assert list(_requests(messages)) == [("a", [0, 2]), ("b", [1])]


def test_a_request_holds_at_most_the_message_limit():
    messages = [OutgoingMessage("a", b"x", {}) for _ in range(2 * pubsub.MESSAGES_PER_REQUEST + 1)]
    sizes = [len(positions) for _, positions in _requests(messages)]
    assert sizes == [pubsub.MESSAGES_PER_REQUEST, pubsub.MESSAGES_PER_REQUEST, 1]
    assert [p for _, positions in _requests(messages) for p in positions] == list(range(len(messages)))


def test_a_request_stays_under_the_byte_limit_and_a_large_message_goes_alone():
    third = pubsub.BYTES_PER_REQUEST // 3
    messages = [OutgoingMessage("a", b"x" * third, {"key": "value"}) for _ in range(4)]
    messages.append(OutgoingMessage("a", b"y" * pubsub.BYTES_PER_REQUEST, {}))
    assert [positions for _, positions in _requests(messages)] == [[0, 1], [2, 3], [4]]


def test_nothing_to_publish_is_no_request():
    assert list(_requests([])) == []

