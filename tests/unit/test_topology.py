import dataclasses
import logging
import os
import subprocess
import sys

import pytest
import yaml

from shared.stack.layout import REPO_ROOT
from shared.topology import MANIFEST_PATH, compiled_manifest, load_topology, parse_topology, write_compiled_manifest


def test_manifest_is_consistent():
    assert load_topology().problems() == []


def test_every_push_subscription_has_a_dlq_with_a_holding_subscription():
    topology = load_topology()
    for sub in topology.subscriptions:
        if sub.push_to:
            assert sub.dead_letter_topic in topology.topics
            assert any(s.topic == sub.dead_letter_topic and not s.push_to for s in topology.subscriptions)


def test_every_function_lists_its_database_settings():
    for function in load_topology().functions:
        if function.schema:
            assert {"DB_NAME", "DB_USER", "GCP_PROJECT", "SERVICE_NAME"} <= set(function.settings)


def test_consistency_check_finds_broken_manifests():
    topology = load_topology()
    relay = topology.function("relay")
    broken = dataclasses.replace(
        topology,
        topics=tuple(t for t in topology.topics if t != "settlement.events.v1.settle.dlq"),
        functions=(dataclasses.replace(relay, publishes=("no.such.topic",)),)
        + tuple(f for f in topology.functions if f.name != "relay"),
        subscriptions=tuple(s for s in topology.subscriptions if s.push_to != "relay"),
    )
    problems = "\n".join(broken.problems())
    assert "relay publishes to undeclared topic no.such.topic" in problems
    assert "relay has no push subscription on relay.tick" in problems
    assert "settlement.events.v1.settle has no declared dead-letter topic" in problems


def test_an_ack_deadline_shorter_than_the_functions_timeout_is_refused():
    topology = load_topology()
    short = tuple(dataclasses.replace(s, ack_deadline_seconds=60) if s.name == "users.registered.v1.notify" else s
                  for s in topology.subscriptions)
    problems = dataclasses.replace(topology, subscriptions=short).problems()
    assert problems == ["subscription users.registered.v1.notify: ack deadline 60s must cover notify's timeout "
                        "120s (at most 600s)"]


def test_every_push_subscription_covers_its_functions_timeout():
    topology = load_topology()
    for sub in topology.subscriptions:
        if sub.push_to:
            assert topology.function(sub.push_to).timeout_seconds <= sub.ack_deadline_seconds <= 600, sub.name


def test_a_timeout_that_leaves_no_room_after_an_outage_wait_is_refused():
    topology = load_topology()
    short = tuple(dataclasses.replace(f, timeout_seconds=45) if f.name == "settle" else f for f in topology.functions)
    problems = dataclasses.replace(topology, functions=short).problems()
    assert "settle: timeout 45s leaves no room to work after waiting out a database outage (40s, shared/db.py)" \
        in problems


def test_a_function_that_redrives_must_publish_every_pushed_topic():
    topology = load_topology()
    narrowed = tuple(dataclasses.replace(f, publishes=("settlement.events.v1",)) if f.redrives_dead_letters else f
                     for f in topology.functions)
    problems = "\n".join(dataclasses.replace(topology, functions=narrowed).problems())
    assert "reconcile redrives dead letters but may not publish to compliance.lists.tick" in problems


def test_a_public_function_may_not_authorise_callers_by_identity():
    """The api trusts the claims of the token Cloud Run verified: made public, nobody would verify it."""
    topology = load_topology()
    assert not topology.function("api").public and topology.function("callbacks").public
    opened = tuple(dataclasses.replace(f, public=True) if f.name == "api" else f for f in topology.functions)
    assert dataclasses.replace(topology, functions=opened).problems() == [
        "api authorises callers by the identity Cloud Run verified, which it verifies only for a function that is "
        "not public"]


COMPILED_LOAD = """
import sys
from pathlib import Path
from shared.topology import load_topology
topology = load_topology(Path(sys.argv[1]))
print(len(topology.subscriptions), "yaml" in sys.modules)
"""


def _manifest_copy(tmp_path):
    manifest = tmp_path / "topology.yaml"
    manifest.write_bytes(MANIFEST_PATH.read_bytes())
    return manifest


def test_the_compiled_manifest_is_read_in_place_of_the_yaml_and_parses_to_the_same_topology(tmp_path):
    manifest = _manifest_copy(tmp_path)
    compiled = write_compiled_manifest(manifest)
    assert compiled == tmp_path / "topology.json"
    from_yaml = parse_topology(yaml.safe_load(manifest.read_text()))
    assert load_topology.__wrapped__(manifest) == from_yaml
    # A fresh interpreter reading it never imports PyYAML (the point of it: 0.012 s of the reconciler's start).
    out = subprocess.run([sys.executable, "-c", COMPILED_LOAD, str(manifest)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, check=True)
    assert out.stdout.split() == [str(len(from_yaml.subscriptions)), "False"]
    compiled.unlink()
    out = subprocess.run([sys.executable, "-c", COMPILED_LOAD, str(manifest)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, check=True)
    assert out.stdout.split() == [str(len(from_yaml.subscriptions)), "True"]  # without it, the YAML is parsed


def test_a_compiled_manifest_is_rewritten_only_when_the_manifest_changed(tmp_path):
    manifest = _manifest_copy(tmp_path)
    compiled = write_compiled_manifest(manifest)
    written = compiled.stat().st_mtime_ns
    assert write_compiled_manifest(manifest).stat().st_mtime_ns == written
    assert compiled.read_bytes() == compiled_manifest(manifest.read_bytes())  # the packager's bytes, too


@pytest.mark.parametrize(("compiled", "reason"), [
    (None, "compiled from another version"),  # stale: the manifest changed since it was compiled
    (b"{not json", "not JSON"),
    (b'["a list"]', "not a compiled manifest"),
    (b'{"manifest_sha256": "x"}', "not a compiled manifest"),
])
def test_a_stale_or_unreadable_compiled_manifest_is_ignored_with_a_warning(tmp_path, caplog, compiled, reason):
    manifest = _manifest_copy(tmp_path)
    write_compiled_manifest(manifest)
    if compiled is None:  # a function's timeout edited after compiling
        manifest.write_text(manifest.read_text().replace("timeout_seconds: 540", "timeout_seconds: 541", 1))
    else:
        (tmp_path / "topology.json").write_bytes(compiled)
    with caplog.at_level(logging.WARNING, logger="shared.topology"):
        topology = load_topology.__wrapped__(manifest)
    assert topology == parse_topology(yaml.safe_load(manifest.read_text()))
    [record] = [r for r in caplog.records if r.name == "shared.topology"]
    assert record.getMessage() == "compiled manifest ignored, the YAML is parsed instead"
    assert reason in record.__dict__["reason"]
