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


@pytest.mark.parametrize(("function_name", "change", "expected"), [
    ("fetch-price", {"PRICE_ASSETS": None, "COINGECKO_API_KEY": None}, "missing PRICE_ASSETS, COINGECKO_API_KEY"),
    ("fetch-price", {"PRICE_ASSETS": '[{"symbol": "ETH"}]'}, "asset 0.token must be a non-empty string"),
    ("assess-margin", {"PRICE_ASSETS": "not json"}, "PRICE_ASSETS is not JSON"),
    ("assess-margin", {"RISK_TIER_THRESHOLDS": "WARNING=1.1,MARGIN_CALL=1.2,LIQUIDATION=1.0"}, "must fall"),
])
def test_price_and_risk_functions_refuse_to_start_with_bad_asset_or_tier_settings(stack, function_name, change,
                                                                                  expected):
    function = stack.topology.function(function_name)
    env = stack.function_env(function, escrow_address="0x" + "00" * 20)
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("functions-framework")), f"--target={function.entry_point}",
         f"--source={REPO_ROOT / function.source / 'main.py'}", "--host=127.0.0.1",
         f"--port={stack.layout.base_port + 42}"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode != 0
    assert "ConfigurationError" in completed.stderr
    assert expected in completed.stderr
