"""The stack's anvil writes the chain states it no longer holds in memory inside the stack's own directory,
so `down` deletes them; by default they went to ~/.foundry/anvil/tmp and stayed there (77 GB in a day)."""

from pathlib import Path

import requests

from shared.stack import services
from shared.stack.layout import StackLayout
from shared.stack.processes import wait_until

HOME_STATES = Path.home() / ".foundry" / "anvil" / "tmp"


def _written(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file()) if directory.exists() else 0


def test_anvil_keeps_its_states_on_disk_inside_the_stack_directory(stack, tmp_path):
    # An anvil of its own (the stack's one serves the other tests), on ports no stack uses.
    layout = StackLayout(root=tmp_path / "stack", base_port=stack.layout.base_port + 70)
    left_in_home = set(HOME_STATES.iterdir()) if HOME_STATES.exists() else set()
    pid, fresh = services.start_anvil(layout, None)
    try:
        assert fresh
        # 750 blocks: more than anvil holds in memory, so it writes the older states to disk.
        requests.post(layout.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "anvil_mine",
                                            "params": [hex(750)]}, timeout=60).raise_for_status()
        states = services.anvil_states_dir(layout)
        wait_until(lambda: _written(states) > 0, "anvil's states on disk", 30)
        assert states.is_relative_to(layout.runtime_dir)  # what `down` deletes
    finally:
        services.stop(pid)
    assert (set(HOME_STATES.iterdir()) if HOME_STATES.exists() else set()) == left_in_home
