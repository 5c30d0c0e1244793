"""Loads the topology manifest (topology.yaml) into typed records, and checks it is consistent."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from shared.db import OUTAGE_WAIT_SECONDS

log = logging.getLogger(__name__)

MANIFEST_PATH = Path(__file__).with_name("topology.yaml")
# Pub/Sub refuses a longer ack deadline.
MAX_ACK_DEADLINE_SECONDS = 600
# A push-triggered function waits up to OUTAGE_WAIT_SECONDS for the database inside one delivery; its
# timeout must leave at least this much to do the work once the database is back.
MIN_WORK_AFTER_OUTAGE_SECONDS = 20
# Settings that authorise callers by the identity Cloud Run verified (shared/api/caller.py): Cloud Run verifies
# it only for a function that is not public, so such a function must never be.
CALLER_IDENTITY_SETTINGS = frozenset({"COMPLIANCE_REVIEWERS"})


@dataclass(frozen=True)
class RetryPolicy:
    """Pub/Sub's exponential backoff bounds for redelivery."""

    minimum_backoff_seconds: int
    maximum_backoff_seconds: int


@dataclass(frozen=True)
class Function:
    """One Cloud Function."""

    name: str
    entry_point: str
    source: str
    # The topics whose messages trigger it (usually one; assess-margin consumes two).
    trigger_topics: tuple[str, ...]
    http: bool
    publishes: tuple[str, ...]
    schema: str | None
    db_role: str | None
    timeout_seconds: int
    # Environment variables it reads: required ones, then those with a default in code (the platform's
    # included: see topology.yaml).
    settings: tuple[str, ...]
    # Deployed sizing (Terraform): memory ("512Mi"), instances and concurrent requests per instance.
    memory: str
    max_instances: int
    concurrency: int
    # Secret Manager secrets exposed to it as environment variables of the same name.
    secrets: tuple[str, ...] = ()
    # Pulls every dead-letter hold subscription and republishes to the source topics (the reconciler).
    redrives_dead_letters: bool = False
    tuning: tuple[str, ...] = ()
    # An HTTP function anyone may call (allUsers invokes it: terraform/iam.tf); others are IAM-only.
    public: bool = False


@dataclass(frozen=True)
class Subscription:
    """A push subscription into a function, or a pull subscription that holds a dead-letter topic."""

    name: str
    topic: str
    push_to: str | None
    ack_deadline_seconds: int
    dead_letter_topic: str | None
    max_delivery_attempts: int | None
    retry: RetryPolicy | None


@dataclass(frozen=True)
class SchedulerJob:
    """A Cloud Scheduler job that publishes a tick."""

    name: str
    schedule: str
    time_zone: str
    topic: str


@dataclass(frozen=True)
class Topology:
    """The whole manifest."""

    topics: tuple[str, ...]
    secrets: tuple[str, ...]
    functions: tuple[Function, ...]
    subscriptions: tuple[Subscription, ...]
    scheduler_jobs: tuple[SchedulerJob, ...]

    def function(self, name: str) -> Function:
        """The function called `name`."""
        for function in self.functions:
            if function.name == name:
                return function
        raise KeyError(name)

    def subscription(self, name: str) -> Subscription:
        """The subscription called `name`."""
        return next(s for s in self.subscriptions if s.name == name)

    def dead_letter_topics(self) -> set[str]:
        """Every topic some subscription dead-letters into."""
        return {s.dead_letter_topic for s in self.subscriptions if s.dead_letter_topic}

    def problems(self) -> list[str]:
        """Every inconsistency in the manifest; empty when it is sound."""
        topics = set(self.topics)
        functions = {f.name: f for f in self.functions}
        found = []
        if len(topics) != len(self.topics):
            found.append("a topic is declared twice")
        for function in self.functions:
            if bool(function.trigger_topics) == function.http:
                found.append(f"{function.name} needs exactly one kind of trigger: topics or http")
            for topic in function.publishes:
                if topic not in topics:
                    found.append(f"{function.name} publishes to undeclared topic {topic}")
            for secret in function.secrets:
                if secret not in self.secrets:
                    found.append(f"{function.name} uses undeclared secret {secret}")
                if secret in function.settings or secret in function.tuning:
                    found.append(f"{function.name} lists {secret} both as a setting and as a secret")
            for name in set(function.settings) & set(function.tuning):
                found.append(f"{function.name} lists {name} both as a setting and as tuning")
            if function.public and CALLER_IDENTITY_SETTINGS & set(function.settings):
                found.append(f"{function.name} authorises callers by the identity Cloud Run verified, which it "
                             "verifies only for a function that is not public")
            if function.max_instances < 1 or function.concurrency < 1:
                found.append(f"{function.name}: max_instances and concurrency must be at least 1")
            for trigger in function.trigger_topics:
                if trigger not in topics:
                    found.append(f"{function.name} is triggered by undeclared topic {trigger}")
                if not any(s.push_to == function.name and s.topic == trigger for s in self.subscriptions):
                    found.append(f"{function.name} has no push subscription on {trigger}")
        for sub in self.subscriptions:
            if sub.topic not in topics:
                found.append(f"subscription {sub.name} reads undeclared topic {sub.topic}")
            if sub.push_to is not None:
                if sub.push_to not in functions:
                    found.append(f"subscription {sub.name} pushes to unknown function {sub.push_to}")
                if not sub.dead_letter_topic or sub.dead_letter_topic not in topics:
                    found.append(f"subscription {sub.name} has no declared dead-letter topic")
                if not sub.max_delivery_attempts or not 5 <= sub.max_delivery_attempts <= 100:
                    found.append(f"subscription {sub.name}: max_delivery_attempts must be 5..100")
                if sub.retry is None:
                    found.append(f"subscription {sub.name} has no retry policy")
                target = functions.get(sub.push_to)
                if target and not target.timeout_seconds <= sub.ack_deadline_seconds <= MAX_ACK_DEADLINE_SECONDS:
                    # Shorter than the function may run, Pub/Sub pushes again while the first push still works.
                    found.append(f"subscription {sub.name}: ack deadline {sub.ack_deadline_seconds}s must cover "
                                 f"{sub.push_to}'s timeout {target.timeout_seconds}s (at most "
                                 f"{MAX_ACK_DEADLINE_SECONDS}s)")
                if target and target.timeout_seconds < OUTAGE_WAIT_SECONDS + MIN_WORK_AFTER_OUTAGE_SECONDS:
                    found.append(f"{target.name}: timeout {target.timeout_seconds}s leaves no room to work after "
                                 f"waiting out a database outage ({OUTAGE_WAIT_SECONDS:.0f}s, shared/db.py)")
        pushed_topics = {s.topic for s in self.subscriptions if s.push_to is not None}
        for function in self.functions:
            if function.redrives_dead_letters and not pushed_topics <= set(function.publishes):
                missing = ", ".join(sorted(pushed_topics - set(function.publishes)))
                found.append(f"{function.name} redrives dead letters but may not publish to {missing}")
        for dlq in self.dead_letter_topics():
            if not any(s.topic == dlq and s.push_to is None for s in self.subscriptions):
                found.append(f"dead-letter topic {dlq} has no pull subscription to hold its messages")
        for job in self.scheduler_jobs:
            if job.topic not in topics:
                found.append(f"scheduler job {job.name} publishes to undeclared topic {job.topic}")
        return found


def _function(entry: dict, platform: dict) -> Function:
    trigger = entry.get("trigger") or {}
    return Function(
        name=entry["name"],
        entry_point=entry["entry_point"],
        source=entry["source"],
        trigger_topics=tuple(trigger.get("topics") or ([trigger["topic"]] if trigger.get("topic") else [])),
        http=bool(trigger.get("http")),
        publishes=tuple(entry.get("publishes", ())),
        schema=entry.get("schema"),
        db_role=entry.get("db_role"),
        timeout_seconds=int(entry["timeout_seconds"]),
        settings=tuple(platform.get("settings", ())) + tuple(entry.get("settings", ())),
        tuning=tuple(platform.get("tuning", ())) + tuple(entry.get("tuning", ())),
        memory=str(entry["memory"]),
        max_instances=int(entry["max_instances"]),
        concurrency=int(entry["concurrency"]),
        secrets=tuple(entry.get("secrets", ())),
        redrives_dead_letters=bool(entry.get("redrives_dead_letters", False)),
        public=bool(trigger.get("public", False)),
    )


def _subscription(entry: dict) -> Subscription:
    retry = entry.get("retry")
    return Subscription(
        name=entry["name"],
        topic=entry["topic"],
        push_to=entry.get("push_to"),
        ack_deadline_seconds=int(entry["ack_deadline_seconds"]),
        dead_letter_topic=entry.get("dead_letter_topic"),
        max_delivery_attempts=entry.get("max_delivery_attempts"),
        retry=RetryPolicy(**retry) if retry else None,
    )


def parse_topology(document: dict) -> Topology:
    """Build a Topology from the decoded manifest."""
    return Topology(
        topics=tuple(document["topics"]),
        secrets=tuple(document.get("secrets", ())),
        functions=tuple(_function(f, document.get("platform") or {}) for f in document["functions"]),
        subscriptions=tuple(_subscription(s) for s in document["subscriptions"]),
        scheduler_jobs=tuple(SchedulerJob(**j) for j in document.get("scheduler_jobs", ())),
    )


def secret_id(name: str) -> str:
    """The Secret Manager id of a manifest secret (COINGECKO_API_KEY -> coingecko-api-key), as secrets.tf names it."""
    return name.lower().replace("_", "-")


@functools.cache
def load_topology(path: Path = MANIFEST_PATH) -> Topology:
    """The manifest at `path`, parsed: from its compiled form beside it while that is current (see
    compiled_manifest), otherwise from the YAML."""
    text = path.read_bytes()
    document = _compiled_document(path, text)
    return parse_topology(document if document is not None else _yaml_document(text))


def compiled_manifest(text: bytes) -> bytes:
    """The manifest `text` as JSON, stamped with the YAML's SHA-256: what load_topology reads in place of
    the YAML while the stamp matches. The packager writes it into every zip that holds the manifest, and
    the local stack into the source tree (gitignored). Why: the reconciler reads the manifest on its first
    run, and importing PyYAML and parsing the YAML took 0.012 s of it, a tenth of the bare
    functions-framework hello's cold start; reading the JSON takes 0.0003 s."""
    return json.dumps({"manifest_sha256": hashlib.sha256(text).hexdigest(), "document": _yaml_document(text)},
                      sort_keys=True, separators=(",", ":")).encode()


def write_compiled_manifest(path: Path = MANIFEST_PATH) -> Path:
    """Write the compiled form of the manifest at `path` beside it (only when it changed); return its path."""
    target = _compiled_path(path)
    compiled = compiled_manifest(path.read_bytes())
    if not target.is_file() or target.read_bytes() != compiled:
        target.write_bytes(compiled)
    return target


def _compiled_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _compiled_document(path: Path, text: bytes) -> dict | None:
    """The document of the compiled manifest beside `path`, or None when there is none or it is not the
    compiled form of `text` (stale, or unreadable: the YAML is parsed then, and a warning says why)."""
    target = _compiled_path(path)
    try:
        compiled = json.loads(target.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        reason = f"not JSON: {exc}"
    else:
        if not isinstance(compiled, dict) or not isinstance(compiled.get("document"), dict):
            reason = "not a compiled manifest"
        elif compiled.get("manifest_sha256") != hashlib.sha256(text).hexdigest():
            reason = "compiled from another version of the manifest"
        else:
            return compiled["document"]
    log.warning("compiled manifest ignored, the YAML is parsed instead", extra={"path": str(target), "reason": reason})
    return None


def _yaml_document(text: bytes) -> dict:
    import yaml  # imported here: a function reading the compiled manifest never loads PyYAML

    # libyaml's safe loader where PyYAML has it: 0.004 s, against 0.018 s for the pure-Python one.
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


if __name__ == "__main__":  # python -m shared.topology secret-ids: for the deploy scripts
    import sys

    if sys.argv[1:] != ["secret-ids"]:
        raise SystemExit("usage: python -m shared.topology secret-ids")
    print(" ".join(secret_id(name) for name in load_topology().secrets))
