"""Replay dead letters: move messages from a dead-letter hold subscription back onto a topic.

    python -m shared.deploy.replay_dead_letters --project P \\
        --subscription settlement.events.v1.settle.dlq.hold --topic settlement.events.v1 [--limit 100] [--dry-run]

Each message is republished with its data and attributes, and acknowledged on the hold subscription
only after Pub/Sub confirmed the republish: a crash in between replays it twice, which the consumer's
inbox absorbs (event ids are unchanged). `--dry-run` prints what would be replayed and acknowledges
nothing and hands the messages straight back. Works against the emulator when PUBSUB_EMULATOR_HOST is set.
"""

from __future__ import annotations

import argparse
import json

from google.cloud import pubsub_v1  # type: ignore[attr-defined]

PULL_BATCH = 100


def replay(project: str, subscription: str, topic: str, limit: int, dry_run: bool = False) -> list[dict]:
    """Republish up to `limit` held messages onto `topic`; return what was (or would be) replayed."""
    subscriber = pubsub_v1.SubscriberClient()
    publisher = pubsub_v1.PublisherClient()
    subscription_path = subscriber.subscription_path(project, subscription)
    topic_path = publisher.topic_path(project, topic)
    replayed: list[dict] = []
    try:
        while len(replayed) < limit:
            reply = subscriber.pull(request={"subscription": subscription_path,
                                             "max_messages": min(PULL_BATCH, limit - len(replayed))}, timeout=10)
            if not reply.received_messages:
                break
            for received in reply.received_messages:
                message = received.message
                summary = {"message_id": message.message_id, "attributes": dict(message.attributes),
                           "delivery_attempt": received.delivery_attempt}
                if not dry_run:
                    publisher.publish(topic_path, message.data, **dict(message.attributes)).result(timeout=60)
                    subscriber.acknowledge(request={"subscription": subscription_path,
                                                    "ack_ids": [received.ack_id]})
                replayed.append(summary)
            if dry_run:
                # Hand the looked-at messages back at once, untouched; one look is enough.
                subscriber.modify_ack_deadline(request={
                    "subscription": subscription_path, "ack_deadline_seconds": 0,
                    "ack_ids": [received.ack_id for received in reply.received_messages]})
                break
    finally:
        subscriber.close()
    return replayed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True)
    parser.add_argument("--subscription", required=True, help="the dead-letter hold subscription")
    parser.add_argument("--topic", required=True, help="the topic the consumer reads")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    for item in replay(args.project, args.subscription, args.topic, args.limit, args.dry_run):
        print(json.dumps(item))


if __name__ == "__main__":
    main()
