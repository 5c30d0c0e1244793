"""The manifest is the code's: for every function, the variables its code reads (recorded while its
main.py loads its settings) are exactly the platform's and its own `settings`, `tuning` and `secrets`;
every variable the code requires is a setting or a secret, never tuning; no runtime module reads the
environment except through shared/settings.py; and the topics its code publishes to are exactly its
`publishes`. A function drains its schema's whole outbox, so it publishes what every function sharing
that schema stages (the shared.topics constants their import closures use): refresh-sanctions' shard
requests can go out through screen-compliance, which therefore needs the right to publish them (a
missing grant would fail the whole batch in GCP, results included, while the emulator never checks).
The reconciler, which redrives dead letters, also publishes to every topic a push subscription reads."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from shared import topics
from shared.deploy.package import REPO_ROOT, import_closure
from shared.topology import load_topology

TOPOLOGY = load_topology()
FUNCTIONS = TOPOLOGY.functions
OS_READERS = ("environ", "getenv", "environb", "getenvb")


def _read_by(function) -> dict[str, bool]:
    probed = subprocess.run(
        [sys.executable, "-m", "tests.support.settings_probe", str(REPO_ROOT / function.source / "main.py")],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=120)
    assert probed.returncode == 0, probed.stderr[-2000:]
    return json.loads(probed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.name)
def test_the_manifest_lists_exactly_what_the_code_reads(function):
    read = _read_by(function)
    declared = set(function.settings) | set(function.tuning) | set(function.secrets)
    assert set(read) - declared == set(), "read by the code, missing from the manifest"
    assert declared - set(read) == set(), "in the manifest, never read by the code"
    required = {name for name, is_required in read.items() if is_required}
    assert required & set(function.tuning) == set(), "required by the code, listed as tuning"


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.name)
def test_only_settings_py_reads_the_environment(function):
    readers = []
    entry = REPO_ROOT / function.source / "main.py"
    for path in [entry, *import_closure(entry)]:
        if path.suffix != ".py" or path == REPO_ROOT / "shared" / "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            reads = (isinstance(node, ast.Attribute) and node.attr in OS_READERS and isinstance(node.value, ast.Name)
                     and node.value.id == "os") or (isinstance(node, ast.ImportFrom) and node.module == "os"
                                                    and any(alias.name in OS_READERS for alias in node.names))
            if reads:
                readers.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert readers == []


def _topics_used(function) -> set[str]:
    """The shared.topics constants used (`topics.NAME` or `from shared.topics import NAME`) in the
    function's main.py and import closure, as topic names."""
    names = set()
    entry = REPO_ROOT / function.source / "main.py"
    for path in [entry, *import_closure(entry)]:
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "topics":
                names.add(node.attr)
            elif isinstance(node, ast.ImportFrom) and node.module == "shared.topics":
                names.update(alias.name for alias in node.names)
    return {getattr(topics, name) for name in names}


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.name)
def test_the_manifest_lists_exactly_the_topics_the_code_publishes_to(function):
    sharing_its_outbox = [f for f in FUNCTIONS if function.schema and f.schema == function.schema] or [function]
    expected = set().union(*(_topics_used(f) for f in sharing_its_outbox))
    if function.redrives_dead_letters:
        expected |= {s.topic for s in TOPOLOGY.subscriptions if s.push_to}
    assert set(function.publishes) == expected


def test_every_topic_constant_is_a_declared_topic():
    constants = {value for name, value in vars(topics).items() if name.isupper()}
    assert constants <= set(TOPOLOGY.topics)
