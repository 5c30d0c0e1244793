"""One local stack: `up` starts what is missing, `down` stops exactly what `up` started."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy
from web3 import Web3

from shared.assets import assets_to_json
from shared.chain.client import deploy_contract, escrow_contract
from shared.deploy.package import import_closure
from shared.migrations.run import upgrade
from shared.stack import ofac_server, services
from shared.stack.coingecko_server import CoinGeckoControl
from shared.stack.layout import CHAIN_ID, DATABASE, PROJECT_ID, REPO_ROOT, StackLayout
from shared.stack.processes import is_alive, port_open, spawn, stop_group, stop_groups, wait_until
from shared.stack.pubsub_admin import PubSubAdmin
from shared.topology import Function, Topology, load_topology, write_compiled_manifest

# Local values of the settings the manifest lists; a function gets exactly the ones it declares.
CONFIRMATIONS = 2
# The local ETH/USD feed: Chainlink's MockV3Aggregator with the real feed's 8 decimals, and the same
# starting price on the local CoinGecko.
FEED_DECIMALS = 8
INITIAL_ETH_USD = 2000
COINGECKO_ETH = "ethereum"
NATIVE_ETH = "0x0000000000000000000000000000000000000000"
LOCAL_TWILIO_ACCOUNT = "AC" + "0" * 32
SANCTIONS_TICK_TOPIC = "compliance.lists.tick"
RECONCILE_TICK_TOPIC = "ops.reconcile.tick"
LOCAL_PROHIBITED_JURISDICTIONS = ("KP", "IR", "CU", "SY")
LOCAL_HIGH_RISK_JURISDICTIONS = ("AF", "MM", "YE", "VE")
# The principals the local api lets decide on compliance hits (tests/support/reviewers.py sends their tokens).
LOCAL_COMPLIANCE_REVIEWERS = ("mlro@example.org", "analyst@example.org")


class Stack:
    """PostgreSQL, the Pub/Sub emulator, anvil and the functions, for one layout."""

    def __init__(self, layout: StackLayout, topology: Topology | None = None, *, run_scheduler: bool = False) -> None:
        self.layout = layout
        self.topology = topology or load_topology()
        # The demo stack runs the manifest's Scheduler jobs (shared/stack/scheduler.py); tests tick by hand.
        self.run_scheduler = run_scheduler
        self.admin = PubSubAdmin(layout.pubsub_host, PROJECT_ID)

    # ------------------------------------------------------------------ lifecycle

    def start_database(self) -> None:
        """Start PostgreSQL alone (if it is not running) and migrate it: enough to test handlers and SQL."""
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        services.start_postgres(self.layout)
        self.migrate()

    def up(self) -> dict:
        """Start everything that is not running; harmless when all of it is."""
        state = self.layout.read_state()
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        services.start_postgres(self.layout)
        state["emulator_pid"] = services.start_emulator(self.layout, state.get("emulator_pid"))
        state["anvil_pid"], fresh_chain = services.start_anvil(self.layout, state.get("anvil_pid"))
        fresh_vendors = {}
        vendor_args = {"sendgrid": ["--event-webhook-url", f"{self.callbacks_url()}/sendgrid/events",
                                    "--signing-key", str(self._sendgrid_event_key())],
                       "ofac": ["--directory", str(self.layout.ofac_dir)]}
        for vendor in services.LOCAL_VENDORS:
            state[f"{vendor}_pid"], fresh_vendors[vendor] = services.start_vendor(
                self.layout, vendor, state.get(f"{vendor}_pid"), vendor_args.get(vendor, []))
        self.layout.write_state(state)
        self.migrate()
        # anvil's first unlocked default account deploys.
        w3 = self.web3()
        if fresh_chain or not self._contract_deployed(state.get("escrow_address")):
            state["escrow_address"] = deploy_contract(w3, "Escrow", w3.eth.accounts[0])
            self._reset_relay_checkpoints()
        if fresh_chain or not self._contract_deployed(state.get("eth_usd_feed")):
            state["eth_usd_feed"] = deploy_contract(w3, "MockV3Aggregator", w3.eth.accounts[0], FEED_DECIMALS,
                                                    INITIAL_ETH_USD * 10**FEED_DECIMALS)
        if fresh_vendors["coingecko"]:
            self.coingecko().set_price(COINGECKO_ETH, str(INITIAL_ETH_USD))
        self.layout.write_state(state)
        self.admin.apply(self.topology, self.push_endpoints())
        write_compiled_manifest()  # the functions read the manifest as the deployed ones do
        self._start_functions(state)
        self.refresh_sanctions(first_load_only=True)
        if self.run_scheduler:
            state["scheduler_pid"] = self._start_scheduler(state.get("scheduler_pid"))
            self.layout.write_state(state)
        return state

    def stop_scheduler(self) -> None:
        """Stop the local Scheduler (the demo ticks by hand; a scheduled tick would race its steps)."""
        state = self.layout.read_state()
        if state.get("scheduler_pid"):
            stop_group(state.pop("scheduler_pid"))
            self.layout.write_state(state)

    def _start_scheduler(self, pid: int | None) -> int:
        if is_alive(pid):
            return pid  # type: ignore[return-value]
        return spawn([sys.executable, "-m", "shared.stack.scheduler", "--emulator", self.layout.pubsub_host,
                      "--project", PROJECT_ID], self.layout.logs / "scheduler.log",
                     env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT)

    def _start_functions(self, state: dict) -> None:
        """Start every function that is not running, all at once, then wait for each to listen; record
        what code and settings each started with (`stop_changed_functions` compares)."""
        running = state.setdefault("functions", {})
        started = state.setdefault("function_code", {})
        waiting = []
        for function in self.topology.functions:
            port = self.layout.function_port(self.topology, function.name)
            if is_alive(running.get(function.name)) and port_open(port):
                continue
            env = self.function_env(function, state["escrow_address"])
            running[function.name] = self._spawn_function(function, env, port, function.name)
            started[function.name] = self._code_fingerprint(function, env)
            waiting.append((function, port))
        self.layout.write_state(state)
        for function, port in waiting:
            log_path = self.layout.logs / f"{function.name}.log"
            wait_until(lambda port=port: port_open(port), f"function {function.name}", 60, log_path,
                       running[function.name])

    @staticmethod
    def _code_fingerprint(function: Function, env: dict[str, str]) -> str:
        """What a function serves: its main.py, the shared/ modules it imports (its import closure, as
        packaged), and its settings."""
        entry = REPO_ROOT / function.source / "main.py"
        digest = hashlib.sha256(json.dumps(env, sort_keys=True).encode())
        for path in [entry, *import_closure(entry)]:
            digest.update(path.as_posix().encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()

    def stop_changed_functions(self) -> list[str]:
        """Stop the functions whose code or settings changed since they started (the inner loop: an edit
        in settle restarts settle alone, in a second, where restarting all eleven took ~30 s)."""
        state = self.layout.read_state()
        running = state.get("functions", {})
        if not running:  # no stack yet, or its functions are down: `up` starts them all
            return []
        started = state.get("function_code", {})
        escrow_address = state.get("escrow_address", "")
        changed = [f.name for f in self.topology.functions
                   if started.get(f.name) != self._code_fingerprint(f, self.function_env(f, escrow_address))]
        stop_groups(running.pop(name, None) for name in changed)
        for name in changed:
            started.pop(name, None)
        if state:
            self.layout.write_state(state)
        return changed

    def down(self) -> None:
        """Stop the functions, anvil, the emulator and PostgreSQL, and drop their data."""
        state = self.layout.read_state()
        stop_group(state.get("scheduler_pid"))
        stop_groups(state.get("functions", {}).values())
        services.stop(state.get("anvil_pid"))
        for vendor in services.LOCAL_VENDORS:
            services.stop(state.get(f"{vendor}_pid"))
        services.stop(state.get("emulator_pid"))
        services.stop_postgres(self.layout)
        shutil.rmtree(self.layout.runtime_dir, ignore_errors=True)
        if self.layout.state_file.exists():
            self.layout.state_file.unlink()

    def status(self) -> list[tuple[str, str, str]]:
        """(component, address, up/down) for every component."""
        state = self.layout.read_state()
        rows = [
            ("postgres", f"127.0.0.1:{self.layout.postgres_port}", port_open(self.layout.postgres_port)),
            ("pubsub-emulator", self.layout.pubsub_host, port_open(self.layout.pubsub_port)),
            ("anvil", self.layout.rpc_url, port_open(self.layout.anvil_port)),
            ("coingecko (local)", self.layout.coingecko_url, port_open(self.layout.coingecko_port)),
            ("sendgrid (local)", self.layout.sendgrid_url, port_open(self.layout.base_port + 4)),
            ("twilio (local)", self.layout.twilio_url, port_open(self.layout.base_port + 5)),
            ("ofac (local)", self.layout.ofac_url, port_open(self.layout.base_port + 6)),
        ]
        if self.run_scheduler:
            rows.append(("scheduler", "cron jobs of shared/topology.yaml", is_alive(state.get("scheduler_pid"))))
        for function in self.topology.functions:
            port = self.layout.function_port(self.topology, function.name)
            alive = is_alive(state.get("functions", {}).get(function.name)) and port_open(port)
            rows.append((function.name, f"http://127.0.0.1:{port}/", alive))
        return [(name, address, "up" if ok else "down") for name, address, ok in rows]

    # ------------------------------------------------------------------ parts

    def migrate(self) -> None:
        """Run the Alembic migrations as the owner, then let the function roles log in."""
        upgrade(self.layout.database_url())
        roles = [f.db_role for f in self.topology.functions if f.db_role]
        services.allow_function_logins(self.layout, roles)

    def web3(self) -> Web3:
        """A web3 client on the stack's anvil."""
        return Web3(Web3.HTTPProvider(self.layout.rpc_url, request_kwargs={"timeout": 30}))

    def escrow(self):
        """The deployed escrow contract."""
        return escrow_contract(self.web3(), self.layout.read_state()["escrow_address"])

    def eth_usd_feed(self):
        """The local ETH/USD Chainlink feed (MockV3Aggregator)."""
        from shared.chain.abi import load_artifact

        return self.web3().eth.contract(address=self.layout.read_state()["eth_usd_feed"],
                                        abi=load_artifact("MockV3Aggregator")["abi"])

    def coingecko(self) -> CoinGeckoControl:
        """Steering for the local CoinGecko server."""
        return CoinGeckoControl(self.layout.coingecko_url)

    def price_assets(self) -> str:
        """PRICE_ASSETS for the local stack: native ETH, priced by the local feed and CoinGecko."""
        return assets_to_json([{
            "symbol": "ETH", "token": NATIVE_ETH, "decimals": 18, "coingecko_id": COINGECKO_ETH,
            "chainlink_aggregator": self.layout.read_state()["eth_usd_feed"], "heartbeat_seconds": 3600,
            "deviation_threshold": "0.005", "liquidation_threshold": "0.825",
        }])

    def refresh_sanctions(self, *, first_load_only: bool = False, timeout: float = 180.0) -> int:
        """Run the sanctions-refresh job once (a tick, as Cloud Scheduler sends it) and wait for its snapshot.

        Returns the newest snapshot id. With `first_load_only`, does nothing once a snapshot exists.
        """
        engine = sqlalchemy.create_engine(self.layout.database_url())
        query = sqlalchemy.text("SELECT max(snapshot_id) FROM compliance.list_snapshots")
        try:
            with engine.connect() as conn:
                before = conn.execute(query).scalar()
            if before is not None and first_load_only:
                return before
            self.admin.publish(SANCTIONS_TICK_TOPIC, json.dumps({"source": "local-stack",
                                                                 "job": "sanctions-refresh"}).encode())
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    latest = conn.execute(query).scalar()
                if latest is not None and latest != before:
                    return latest
                time.sleep(0.5)
        finally:
            engine.dispose()
        raise RuntimeError(f"refresh-sanctions loaded no new snapshot within {timeout:.0f}s; see its log in "
                           f"{self.layout.logs}")

    def reconcile(self, timeout: float = 300.0) -> dict:
        """Run the reconcile job once (a Scheduler-like tick) and return its run: what it checked and found."""
        engine = sqlalchemy.create_engine(self.layout.database_url())
        try:
            with engine.connect() as conn:
                before = conn.execute(sqlalchemy.text("SELECT coalesce(max(id), 0) FROM ops.runs")).scalar()
            self.admin.publish(RECONCILE_TICK_TOPIC, json.dumps({"source": "local-stack", "job": "reconcile"}).encode())
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    run = conn.execute(sqlalchemy.text("SELECT * FROM ops.runs WHERE id > :b ORDER BY id LIMIT 1"),
                                       {"b": before}).mappings().first()
                    if run is not None:
                        found = conn.execute(sqlalchemy.text(
                            "SELECT kind, key, repair FROM ops.drifts WHERE last_seen_at >= :s ORDER BY id"),
                            {"s": run["started_at"]}).mappings().all()
                        return {**run, "found": [dict(row) for row in found]}
                time.sleep(0.5)
        finally:
            engine.dispose()
        raise RuntimeError(f"reconcile finished no run within {timeout:.0f}s; see {self.layout.logs}/reconcile.log")

    def callbacks_url(self) -> str:
        """Where the local SendGrid and Twilio servers post their delivery callbacks."""
        return f"http://127.0.0.1:{self.layout.function_port(self.topology, 'callbacks')}"

    def _sendgrid_event_key(self) -> Path:
        """The ECDSA P-256 key the local SendGrid signs its event webhook with (made once per stack)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        path = self.layout.root / "sendgrid-event-webhook-key.pem"
        if not path.exists():
            self.layout.root.mkdir(parents=True, exist_ok=True)
            key = ec.generate_private_key(ec.SECP256R1())
            path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return path

    def sendgrid_webhook_public_key(self) -> str:
        """The verification key, base64 DER, as SendGrid shows it in its mail settings."""
        import base64

        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(self._sendgrid_event_key().read_bytes(), None)
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def push_endpoints(self) -> dict[str, str]:
        """Function name -> the URL its push subscriptions deliver to."""
        return {
            f.name: f"http://127.0.0.1:{self.layout.function_port(self.topology, f.name)}/"
            for f in self.topology.functions
        }

    def function_env(self, function: Function, escrow_address: str) -> dict[str, str]:
        """The environment a function runs with: the settings and tuning its manifest entry declares (every
        setting must have a value here; tuning only where the stack differs from the code's default), plus
        plumbing."""
        values = {
            "SERVICE_NAME": function.name,
            "FUNCTION_TIMEOUT_SECONDS": str(function.timeout_seconds),
            "GCP_PROJECT": PROJECT_ID,
            "DB_NAME": DATABASE,
            "DB_USER": function.db_role or "",
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(self.layout.postgres_port),
            "ETH_RPC_URL": self.layout.rpc_url,
            "CHAIN_ID": str(CHAIN_ID),
            "ESCROW_CONTRACT_ADDRESS": escrow_address,
            "CONFIRMATIONS": str(CONFIRMATIONS),
            "RELAY_START_BLOCK": "0",
            "RELAY_BLOCK_RANGE": "500",
            "RELAY_TIME_BUDGET_SECONDS": "20",
            "PREREQUISITE_GRACE_SECONDS": "60",
            "COINGECKO_BASE_URL": self.layout.coingecko_url,
            # Every tick fetches, so tests and the demo see a new price at once (the TTL has its own test).
            "PRICE_CACHE_TTL_SECONDS": "0",
            "COINGECKO_MAX_ATTEMPTS": "3",
            "COINGECKO_MAX_RETRY_WAIT_SECONDS": "5",
            "SENDGRID_BASE_URL": self.layout.sendgrid_url,
            "EMAIL_FROM": "alerts@escrow.local",
            "TWILIO_BASE_URL": self.layout.twilio_url,
            "TWILIO_ACCOUNT_SID": LOCAL_TWILIO_ACCOUNT,
            "SMS_FROM": "+15005550006",
            # Tests and the demo receive webhooks on 127.0.0.1; production allows only public https.
            "WEBHOOK_ALLOW_LOOPBACK": "true",
            "NOTIFY_MAX_ATTEMPTS": "4",
            "TWILIO_STATUS_CALLBACK_URL": f"{self.callbacks_url()}/twilio/status",
            # Screening policy: illustrative lists (a deployment states its own).
            "PROHIBITED_JURISDICTIONS": ",".join(LOCAL_PROHIBITED_JURISDICTIONS),
            "HIGH_RISK_JURISDICTIONS": ",".join(LOCAL_HIGH_RISK_JURISDICTIONS),
            "COMPLIANCE_MIN_AGE": "18",
            "NAME_MATCH_REVIEW_THRESHOLD": "0.92",
            "NAME_MATCH_REPORT_THRESHOLD": "0.85",
            "AML_REVIEW_SCORE": "50",
            "SANCTIONS_LIST_BASE_URL": self.layout.ofac_url,
            "SANCTIONED_ADDRESSES_URL": f"{self.layout.ofac_url}/{ofac_server.ADDRESS_LIST_NAME}",
            # Small shards, so a rescreening of the tests' few hundred users still fans out over many.
            "RESCREEN_SHARD_USERS": "25",
            "RESCREEN_REPLAN_SECONDS": "120",
            # Tests inject drift and expect it found at once; in GCP the default leaves in-flight work alone.
            "RECONCILE_GRACE_SECONDS": "5",
            "COMPLIANCE_REVIEWERS": ",".join(LOCAL_COMPLIANCE_REVIEWERS),
            "REDRIVE_MAX": "3",
            "PUBLISH_TIMEOUT_SECONDS": "10",
        }
        if "SENDGRID_WEBHOOK_PUBLIC_KEY" in function.settings:
            values["SENDGRID_WEBHOOK_PUBLIC_KEY"] = self.sendgrid_webhook_public_key()
        if "PRICE_ASSETS" in function.settings:
            values["PRICE_ASSETS"] = self.price_assets()
        # Locally, secrets are plain values that the local vendor servers accept.
        values.update({name: f"local-stack-{name.lower()}" for name in function.secrets})
        declared = function.settings + function.secrets
        unknown = [name for name in declared if name not in values]
        if unknown:
            raise RuntimeError(f"the local stack has no value for {function.name}'s {', '.join(unknown)}")
        env = {name: values[name] for name in declared + function.tuning if name in values}
        env.update(
            PATH=os.environ.get("PATH", ""),
            PYTHONPATH=str(REPO_ROOT),
            PUBSUB_EMULATOR_HOST=self.layout.pubsub_host,
            # A few request threads per instance, like a 2nd-gen function with small concurrency.
            THREADS="4",
        )
        return env

    def start_function(self, function: Function, pid: int | None, escrow_address: str, *,
                       env_overrides: dict[str, str] | None = None, port: int | None = None,
                       instance: str | None = None) -> int:
        """Serve `function` under functions-framework on its port; reuse a running instance.

        Tests start extra instances with their own `port`, `instance` name (log file) and settings.
        """
        port = port or self.layout.function_port(self.topology, function.name)
        if is_alive(pid) and port_open(port):
            return pid
        env = self.function_env(function, escrow_address)
        env.update(env_overrides or {})
        pid = self._spawn_function(function, env, port, instance or function.name)
        wait_until(lambda: port_open(port), f"function {function.name}", 60,
                   self.layout.logs / f"{instance or function.name}.log", pid)
        return pid

    def _spawn_function(self, function: Function, env: dict[str, str], port: int, instance: str) -> int:
        """Start functions-framework serving `function` on `port`, logging to logs/<instance>.log."""
        command = [
            str(Path(sys.executable).with_name("functions-framework")),
            f"--target={function.entry_point}",
            f"--source={REPO_ROOT / function.source / 'main.py'}",
            "--host=127.0.0.1",
            f"--port={port}",
        ]
        return spawn(command, self.layout.logs / f"{instance}.log", env=env, cwd=REPO_ROOT)

    def run_relay_admin(self, arguments: list[str], escrow_address: str | None = None,
                        env_overrides: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run `python -m shared.relay.admin ARGUMENTS` with the relay's settings; output passes through."""
        relay = self.topology.function("relay")
        env = self.function_env(relay, escrow_address or self.layout.read_state()["escrow_address"])
        env.update(env_overrides or {})
        return subprocess.run([sys.executable, "-m", "shared.relay.admin", *arguments], env=env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)

    def _contract_deployed(self, address: str | None) -> bool:
        return bool(address) and len(self.web3().eth.get_code(Web3.to_checksum_address(address))) > 0

    def _reset_relay_checkpoints(self) -> None:
        # A fresh anvil is a new chain: checkpoints of the old one would point past its head.
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.layout.database_url())
        try:
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text("DELETE FROM relay.checkpoints"))
        finally:
            engine.dispose()
