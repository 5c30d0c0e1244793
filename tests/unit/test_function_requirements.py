"""Each function's requirements.txt (what its zip installs in GCP) pins the versions of requirements.lock
(what every test ran with)."""

import re

import pytest

from shared.stack.layout import REPO_ROOT
from shared.topology import load_topology


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


@pytest.mark.parametrize("function", load_topology().functions, ids=lambda f: f.name)
def test_function_requirements_match_the_lock(function):
    locked = _pins(REPO_ROOT / "requirements.lock")
    required = _pins(REPO_ROOT / function.source / "requirements.txt")
    mismatched = {name: (version, locked.get(name)) for name, version in required.items()
                  if locked.get(name) != version}
    assert mismatched == {}
