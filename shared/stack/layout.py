"""Where one stack instance keeps its files and which ports it listens on."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from shared.topology import Topology

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_ID = "local-escrow"
DATABASE = "escrow"
CHAIN_ID = 31337  # anvil's default


@dataclass(frozen=True)
class StackLayout:
    """Paths and ports of one stack; the demo and the tests each use their own."""

    root: Path
    base_port: int

    @property
    def postgres_port(self) -> int:
        return self.base_port

    @property
    def pubsub_port(self) -> int:
        return self.base_port + 1

    @property
    def anvil_port(self) -> int:
        return self.base_port + 2

    @property
    def coingecko_port(self) -> int:
        return self.base_port + 3

    @property
    def coingecko_url(self) -> str:
        """Base URL of the local CoinGecko server, as COINGECKO_BASE_URL."""
        return f"http://127.0.0.1:{self.coingecko_port}/api/v3"

    @property
    def sendgrid_url(self) -> str:
        """Base URL of the local SendGrid server, as SENDGRID_BASE_URL."""
        return f"http://127.0.0.1:{self.base_port + 4}"

    @property
    def twilio_url(self) -> str:
        """Base URL of the local Twilio server, as TWILIO_BASE_URL."""
        return f"http://127.0.0.1:{self.base_port + 5}"

    @property
    def ofac_url(self) -> str:
        """Base URL of the local OFAC download server, as SANCTIONS_LIST_BASE_URL."""
        return f"http://127.0.0.1:{self.base_port + 6}"

    @property
    def ofac_dir(self) -> Path:
        """The files the local OFAC server publishes; a test edits them to publish a list update."""
        return self.root / "ofac"

    def function_port(self, topology: Topology, name: str) -> int:
        """Each function listens on its own port, in manifest order."""
        names = [f.name for f in topology.functions]
        return self.base_port + 10 + names.index(name)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def runtime_dir(self) -> Path:
        """PostgreSQL's data and socket directory.

        Outside the work tree, under /tmp: the server runs as the unprivileged `postgres` user, which
        must be able to reach it, and a checkout under /root is not reachable for it.
        """
        digest = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:10]
        return Path("/tmp") / f"escrow-stack-{digest}"

    @property
    def pubsub_host(self) -> str:
        return f"127.0.0.1:{self.pubsub_port}"

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.anvil_port}"

    def database_url(self, user: str = "postgres") -> str:
        """SQLAlchemy URL for `user` (trust auth on loopback)."""
        return f"postgresql+pg8000://{user}@127.0.0.1:{self.postgres_port}/{DATABASE}"

    def read_state(self) -> dict:
        """What `up` recorded: pids and the deployed contract addresses."""
        if not self.state_file.exists():
            return {}
        return json.loads(self.state_file.read_text())

    def write_state(self, state: dict) -> None:
        """Record pids and addresses for `down` and `status`."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2, sort_keys=True))


DEMO_LAYOUT = StackLayout(root=REPO_ROOT / ".stack" / "demo", base_port=18400)
