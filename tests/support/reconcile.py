"""A reconcile instance on the test database, for calling its steps directly (no chain, no Pub/Sub)."""

from __future__ import annotations

from shared.assets import assets_to_json
from shared.reconcile.service import Reconciler
from shared.reconcile.settings import ReconcileSettings
from shared.relay.settings import ChainSettings
from shared.risk.settings import RiskSettings
from shared.settings import Settings
from shared.stack.layout import DATABASE, StackLayout

ETH_TOKEN = "0x0000000000000000000000000000000000000000"
USDC_TOKEN = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
# Two assets of different decimals.
ASSETS = [
    {"symbol": "ETH", "token": ETH_TOKEN, "decimals": 18},
    {"symbol": "USDC", "token": USDC_TOKEN, "decimals": 6},
]


def reconciler_on(layout: StackLayout) -> Reconciler:
    """The reconciler as fn_reconcile on the stack's database, with ASSETS; its chain endpoint answers nothing."""
    assets = [{**asset, "coingecko_id": asset["symbol"].lower(), "chainlink_aggregator": "0x" + "11" * 20,
               "heartbeat_seconds": 3600, "deviation_threshold": "0.005", "liquidation_threshold": "0.825"}
              for asset in ASSETS]
    env = {"SERVICE_NAME": "reconcile", "GCP_PROJECT": "local-escrow", "DB_NAME": DATABASE, "DB_USER": "fn_reconcile",
           "DB_HOST": "127.0.0.1", "DB_PORT": str(layout.postgres_port), "ETH_RPC_URL": "http://127.0.0.1:9",
           "CHAIN_ID": "31337", "ESCROW_CONTRACT_ADDRESS": "0x" + "5b" * 20, "CONFIRMATIONS": "2",
           "PRICE_ASSETS": assets_to_json(assets), "RECONCILE_GRACE_SECONDS": "60"}
    return Reconciler(Settings.from_env(env, parts=[ChainSettings, RiskSettings, ReconcileSettings]))
