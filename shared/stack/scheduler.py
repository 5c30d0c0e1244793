"""The local Cloud Scheduler: publishes each manifest job's tick on its cron schedule, as GCP does.

    python -m shared.stack.scheduler --emulator 127.0.0.1:18401 --project local-escrow

Schedules are read from `shared/topology.yaml` (`scheduler_jobs`) and evaluated in each job's time zone
with croniter. The demo stack runs it, so a stack left up relays, prices, refreshes the sanctions lists,
redrives and reconciles on its own. The test stack does not: tests tick what they drive, when they
drive it (a tick at a random moment would race their assertions).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import requests
from croniter import croniter

from shared.topology import SchedulerJob, load_topology

log = logging.getLogger("scheduler")


class LocalScheduler:
    """Fires the jobs' ticks at their cron times onto the emulator."""

    def __init__(self, emulator_host: str, project_id: str, jobs: tuple[SchedulerJob, ...]) -> None:
        self.base = f"http://{emulator_host}/v1/projects/{project_id}/topics"
        now = datetime.now(UTC)
        self.schedules = {job.name: croniter(job.schedule, now.astimezone(ZoneInfo(job.time_zone)))
                          for job in jobs}
        self.jobs = {job.name: job for job in jobs}
        self.due = {name: schedule.get_next(datetime) for name, schedule in self.schedules.items()}

    def run_forever(self) -> None:
        """Sleep until the next job is due, publish its tick, repeat."""
        while True:
            self.fire_due(datetime.now(UTC))
            time.sleep(max(0.05, min(1.0, (min(self.due.values()) - datetime.now(UTC)).total_seconds())))

    def fire_due(self, now: datetime) -> list[str]:
        """Publish the tick of every job due at `now`; return their names."""
        fired = []
        for name, due in self.due.items():
            if due <= now:
                self._publish(self.jobs[name], due)
                self.due[name] = self.schedules[name].get_next(datetime)
                fired.append(name)
        return fired

    def _publish(self, job: SchedulerJob, scheduled_for: datetime) -> None:
        body = json.dumps({"source": "local-scheduler", "job": job.name,
                           "scheduled_for": scheduled_for.astimezone(UTC).isoformat()}).encode()
        try:
            reply = requests.post(f"{self.base}/{job.topic}:publish", timeout=10,
                                  json={"messages": [{"data": base64.b64encode(body).decode()}]})
            reply.raise_for_status()
            log.info("tick published: %s -> %s", job.name, job.topic)
        except requests.RequestException as exc:  # the emulator restarting: the next run of the job catches up
            log.warning("tick of %s not published: %r", job.name, exc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emulator", required=True, help="host:port of the Pub/Sub emulator")
    parser.add_argument("--project", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    LocalScheduler(args.emulator, args.project, load_topology().scheduler_jobs).run_forever()


if __name__ == "__main__":
    main()
