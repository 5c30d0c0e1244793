"""What an instance loads when it starts: none of the libraries kept off the cold-start path.

Each was measured there (tests/bench/cold_start.py): web3 (0.8 s of relay's import, eth_account and
eth_keyfile included) and eth_abi left relay and fetch-price for shared/chain; pydantic (0.08 s with its
first validation) left every function for msgspec (shared/events.py); SQLAlchemy (0.12 s) for shared/db.py's
own pool on pg8000 (it stays for the migrations and the tests); eth-hash's pycryptodome backend (cffi and
pycparser, 0.05 s at the first hash) for safe-pysha3 (shared/keccak.py). A module that imports one of them again,
even through another library, fails here.
"""

import subprocess
import sys

import pytest

from shared.stack.layout import REPO_ROOT
from shared.topology import load_topology

KEPT_OFF_THE_START = ("pydantic", "pydantic_core", "web3", "eth_account", "eth_keyfile", "eth_abi", "eth_utils",
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
