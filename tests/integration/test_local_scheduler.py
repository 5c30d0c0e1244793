"""The local Scheduler publishes the manifest's ticks on their cron schedules, onto the emulator."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from croniter import croniter

from shared.stack.layout import PROJECT_ID
from shared.stack.scheduler import LocalScheduler
from shared.topology import SchedulerJob, load_topology


def test_every_manifest_schedule_is_valid_cron():
    for job in load_topology().scheduler_jobs:
        assert croniter.is_valid(job.schedule), job.name


def test_jobs_fire_at_their_cron_times_and_only_then(stack, bus):
    topic = f"test-scheduler-{time.monotonic_ns()}"
    bus.create_topic(topic)
    ticks = bus.pull_subscription(topic)
    every_minute = SchedulerJob(name="test-every-minute", schedule="* * * * *", time_zone="Etc/UTC", topic=topic)
    hourly = SchedulerJob(name="test-hourly", schedule="0 * * * *", time_zone="Etc/UTC", topic=topic)
    scheduler = LocalScheduler(stack.layout.pubsub_host, PROJECT_ID, (every_minute, hourly))
    now = datetime.now(UTC)
    assert scheduler.fire_due(now) == []
    next_minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    fired = scheduler.fire_due(next_minute)
    assert "test-every-minute" in fired
    assert ("test-hourly" in fired) == (next_minute.minute == 0)
    assert scheduler.fire_due(next_minute) == []  # each cron time fires once
    received = [json.loads(m.data) for m in bus.pull(ticks, until=lambda ms: len(ms) >= len(fired), settle=1.0)]
    assert sorted(tick["job"] for tick in received) == sorted(fired)
    assert all(tick["source"] == "local-scheduler" for tick in received)


def test_seconds_schedules_tick_in_real_time(stack, bus):
    topic = f"test-scheduler-{time.monotonic_ns()}"
    bus.create_topic(topic)
    ticks = bus.pull_subscription(topic)
    job = SchedulerJob(name="test-every-second", schedule="* * * * * *", time_zone="Etc/UTC", topic=topic)
    scheduler = LocalScheduler(stack.layout.pubsub_host, PROJECT_ID, (job,))
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        scheduler.fire_due(datetime.now(UTC))
        time.sleep(0.05)
    received = bus.pull(ticks, until=lambda ms: len(ms) >= 3, timeout=10)
    assert 3 <= len(received) <= 4
