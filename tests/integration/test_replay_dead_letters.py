"""The dead-letter replay tool against the emulator: held messages go back onto the topic with their
data and attributes, and leave the hold subscription; a dry run moves nothing."""

import uuid

from shared.deploy.replay_dead_letters import replay
from shared.stack.layout import PROJECT_ID


def test_held_messages_are_replayed_once_with_data_and_attributes(bus):
    suffix = uuid.uuid4().hex[:8]
    topic, dlq = f"replay-target-{suffix}", f"replay-target-{suffix}.dlq"
    bus.create_topic(topic)
    bus.create_topic(dlq)
    hold = bus.pull_subscription(dlq)
    target = bus.pull_subscription(topic)
    for n in range(3):
        bus.publish(dlq, f"letter {n}".encode(), event_id=f"e{n}", event_type="EscrowCreated")
    hold_name = hold.rsplit("/", 1)[-1]

    looked = replay(PROJECT_ID, hold_name, topic, limit=10, dry_run=True)
    assert len(looked) == 3
    assert bus.pull(target, timeout=2.0) == []

    replayed = replay(PROJECT_ID, hold_name, topic, limit=10)
    assert sorted(item["attributes"]["event_id"] for item in replayed) == ["e0", "e1", "e2"]
    arrived = bus.pull(target, until=lambda ms: len(ms) >= 3, timeout=20.0, settle=1.0)
    assert sorted((m.data, m.attributes["event_id"]) for m in arrived) == [
        (b"letter 0", "e0"), (b"letter 1", "e1"), (b"letter 2", "e2")]
    assert replay(PROJECT_ID, hold_name, topic, limit=10) == []
