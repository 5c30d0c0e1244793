"""A function with incomplete database settings refuses to start, naming what is missing."""

import subprocess
import sys
from pathlib import Path

import pytest

from shared.stack.layout import REPO_ROOT


@pytest.mark.parametrize("dropped", [("DB_HOST",), ("DB_PORT",), ("DB_NAME", "DB_USER")])
def test_settle_refuses_to_start_without_database_settings(stack, dropped):
    function = stack.topology.function("settle")
    env = stack.function_env(function, escrow_address="0x" + "00" * 20)
    for name in dropped:
        env.pop(name)
    port = stack.layout.base_port + 40
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("functions-framework")), "--target=settle",
         f"--source={REPO_ROOT / 'functions/settle/main.py'}", "--host=127.0.0.1", f"--port={port}"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode != 0
    for name in dropped:
        assert name in completed.stderr
    assert "ConfigurationError" in completed.stderr


def test_relay_refuses_to_start_without_chain_settings(stack):
    function = stack.topology.function("relay")
    env = stack.function_env(function, escrow_address="0x" + "00" * 20)
    env.pop("ETH_RPC_URL")
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("functions-framework")), "--target=relay",
         f"--source={REPO_ROOT / 'functions/relay/main.py'}", "--host=127.0.0.1",
         f"--port={stack.layout.base_port + 41}"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode != 0
    assert "missing ETH_RPC_URL" in completed.stderr
