"""What an instance loads when it starts: none of the libraries kept off the cold-start path.

Each was measured there (tests/bench/cold_start.py): web3 (0.8 s of relay's import, eth_account and
eth_keyfile included) and eth_abi left relay and fetch-price for shared/chain; pydantic (0.08 s with its
first validation) left every function for msgspec (shared/events.py); SQLAlchemy (0.12 s) for shared/db.py's
own pool on pg8000 (it stays for the migrations and the tests); eth-hash's pycryptodome backend (cffi and
pycparser, 0.05 s at the first hash) for safe-pysha3 (shared/keccak.py). A module that imports one of them again,
even through another library, fails here.

And every library an instance loads when it starts is one its requirements.txt installs (pinned there, or
required by what is): shared/keccak.py's safe-pysha3 was at first pinned for nine functions of eleven,
and relay's and fetch-price's zips would have failed their first start.
"""

import importlib.metadata
import re
import subprocess
import sys

import pytest

from shared.stack.layout import REPO_ROOT
from shared.topology import load_topology

KEPT_OFF_THE_START = ("pydantic", "pydantic_core", "web3", "eth_account", "eth_keyfile", "eth_abi", "eth_utils", "yaml",
                      "sqlalchemy", "alembic", "eth_hash", "Crypto", "cffi", "pycparser")
_LOADED_BY_MAIN = (
    "import importlib.util, sys; spec = importlib.util.spec_from_file_location('main', sys.argv[1]); "
    "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
    "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
)


@pytest.mark.parametrize("function_name", [function.name for function in load_topology().functions])
def test_a_function_loads_none_of_the_libraries_kept_off_its_start(stack, function_name):
    function = stack.topology.function(function_name)
    env = {**stack.function_env(function, escrow_address="0x" + "00" * 20), "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run([sys.executable, "-c", _LOADED_BY_MAIN, str(REPO_ROOT / function.source / "main.py")],
                               env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    loaded = set(completed.stdout.split())
    assert {"shared", "functions_framework", "msgspec"} <= loaded  # main.py was loaded, with its envelopes
    assert loaded.isdisjoint(KEPT_OFF_THE_START), sorted(loaded & set(KEPT_OFF_THE_START))


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0]).lower()


def _installed_with(pinned: set[str]) -> set[str]:
    """The pinned distributions and every distribution they require, transitively (extras left out)."""
    found, queue = set(), list(pinned)
    while queue:
        name = queue.pop()
        if name in found:
            continue
        found.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        queue.extend(_name(r) for r in requires if "extra ==" not in r.split(";", 1)[-1])
    return found


@pytest.mark.parametrize("function_name", [function.name for function in load_topology().functions])
def test_every_library_a_function_loads_at_start_is_installed_by_its_requirements(stack, function_name):
    """What GCP installs for a function is its requirements.txt and what those require: a library the
    function loads from elsewhere (it came with the test environment) would fail its deploy's first start."""
    function = stack.topology.function(function_name)
    env = {**stack.function_env(function, escrow_address="0x" + "00" * 20), "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run([sys.executable, "-c", _LOADED_BY_MAIN, str(REPO_ROOT / function.source / "main.py")],
                               env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    # What the interpreter loads before main.py (setuptools' distutils hook, from a .pth file) is not the function's.
    at_start = subprocess.run([sys.executable, "-c", "import sys; print(' '.join(sys.modules))"], env=env,
                              capture_output=True, text=True, timeout=60, check=True).stdout.split()
    distributions = importlib.metadata.packages_distributions()
    needed = {_name(distribution) for module in set(completed.stdout.split()) - set(at_start)
              if module not in sys.stdlib_module_names for distribution in distributions.get(module, [])}
    pinned = {_name(line.split("#", 1)[0]) for line in (REPO_ROOT / function.source / "requirements.txt")
              .read_text().splitlines() if line.split("#", 1)[0].strip()}
    assert needed - _installed_with(pinned) == set()
