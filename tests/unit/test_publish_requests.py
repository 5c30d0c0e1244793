"""How publish_all groups messages into Publish requests: per topic, in order, within Pub/Sub's limits."""

import pytest

from shared import pubsub
from shared.errors import PublishFailed
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


class _Publisher:
    """Answers Publish requests with ids made from the messages' data; refuses one topic."""

    def __init__(self, refused_topic: str | None = None) -> None:
        self.refused_topic = refused_topic

    def publish(self, request, retry, timeout):
        if request.topic.endswith(f"/{self.refused_topic}"):
            raise RuntimeError("unavailable")

        class Reply:
            message_ids = [m.data.decode() for m in request.messages]
        return Reply()


def test_ids_come_back_in_the_messages_order_across_concurrent_requests(monkeypatch):
    monkeypatch.setattr(pubsub, "get_publisher", lambda: _Publisher())
    messages = [OutgoingMessage("a" if n % 3 else "b", str(n).encode(), {})
                for n in range(3 * pubsub.MESSAGES_PER_REQUEST)]
    assert pubsub.publish_all("p", messages, 5) == [str(n) for n in range(len(messages))]


def test_one_failed_request_fails_the_whole_publish(monkeypatch):
    monkeypatch.setattr(pubsub, "get_publisher", lambda: _Publisher(refused_topic="b"))
    messages = [OutgoingMessage("a", b"1", {}), OutgoingMessage("b", b"2", {})]
    with pytest.raises(PublishFailed, match="unavailable"):
        pubsub.publish_all("p", messages, 5)
