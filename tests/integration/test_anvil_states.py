"""The stack's anvil writes no chain states to disk: by default it wrote the states of blocks older than the
500 it holds in memory to ~/.foundry/anvil/tmp and left them there (76 GB in 20 minutes of bench-sized
chains: a full disk)."""

import time
from pathlib import Path

import requests

from shared.stack import services
from shared.stack.layout import StackLayout

HOME_STATES = Path.home() / ".foundry" / "anvil" / "tmp"
IN_MEMORY_STATES = 500  # anvil's default
MINED = 750


def _rpc(layout: StackLayout, method: str, params: list) -> dict:
    reply = requests.post(layout.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                          timeout=60)
    reply.raise_for_status()
    return reply.json()


def _state_files(directory: Path) -> set[Path]:
    return {path for path in directory.rglob("*") if path.is_file()} if directory.exists() else set()


def test_anvil_keeps_recent_states_in_memory_and_writes_none_to_disk(stack, tmp_path):
    # An anvil of its own (the stack's one serves the other tests), on ports no stack uses.
    layout = StackLayout(root=tmp_path / "stack", base_port=stack.layout.base_port + 70)
    left_in_home = set(HOME_STATES.iterdir()) if HOME_STATES.exists() else set()
    pid, fresh = services.start_anvil(layout, None)
    try:
        assert fresh
        # More blocks than anvil holds in memory: by default it starts writing the older states to disk.
        _rpc(layout, "anvil_mine", [hex(MINED)])
        time.sleep(2)  # anvil writes them in the background
        account = _rpc(layout, "eth_accounts", [])["result"][0]
        recent = _rpc(layout, "eth_getBalance", [account, hex(MINED - IN_MEMORY_STATES // 2)])
        old = _rpc(layout, "eth_getBalance", [account, hex(1)])
    finally:
        services.stop(pid)
    assert "result" in recent  # the states a platform read can ask for are served
    assert "BlockOutOfRange" in old["error"]["message"]  # older ones are gone, not on disk
    assert (set(HOME_STATES.iterdir()) if HOME_STATES.exists() else set()) == left_in_home
    assert [path for path in _state_files(tmp_path) if "anvil-state" in str(path)] == []
