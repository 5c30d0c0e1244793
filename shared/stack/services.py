"""The three real parts under the functions: PostgreSQL, the Pub/Sub emulator and anvil."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import requests

from shared.stack.layout import DATABASE, REPO_ROOT, StackLayout
from shared.stack.processes import PrerequisiteMissing, ServiceFailed, port_open, spawn, stop_group, wait_until

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
EMULATOR_RELATIVE = "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
SERVER_USER = "postgres"
# Cloud SQL makes every PostgreSQL database UTF8 with the en_US.UTF8 collation (nothing else can be chosen).
# The stack's database collates the same way, whatever this machine's locale (initdb takes the
# environment's: C.UTF-8 here, SQL_ASCII under LANG=C): ICU's en-US, as glibc's en_US locale need not be
# installed. So text orders as in production (checksummed addresses case-insensitively first), and each
# comparison costs what it costs there.
DATABASE_ENCODING = "UTF8"
DATABASE_ICU_LOCALE = "en-US"
DATABASE_LOCALE = (f"ENCODING '{DATABASE_ENCODING}' LOCALE 'C' LOCALE_PROVIDER icu "
                   f"ICU_LOCALE '{DATABASE_ICU_LOCALE}'")


# ---------------------------------------------------------------- prerequisites


def postgres_bin(tool: str) -> str:
    """Path of a PostgreSQL server binary, or a one-line install hint."""
    for directory in PG_BIN_DIRS:
        candidate = Path(directory) / tool
        if candidate.exists():
            return str(candidate)
    found = shutil.which(tool)
    if found:
        return found
    raise PrerequisiteMissing(
        f"PostgreSQL server binaries not found ({tool}): install them with "
        "`apt-get install postgresql-15` (or your platform's PostgreSQL 15 server package)"
    )


def emulator_binary() -> str:
    """Path of the Pub/Sub emulator launcher, or a one-line install hint."""
    roots = ["/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk"]
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.insert(0, str(Path(os.path.realpath(gcloud)).parents[1]))
    for root in roots:
        candidate = Path(root) / EMULATOR_RELATIVE
        if candidate.exists():
            return str(candidate)
    raise PrerequisiteMissing(
        "Pub/Sub emulator not found: install it with `apt-get install google-cloud-cli-pubsub-emulator` "
        "(or `gcloud components install pubsub-emulator`); it needs Java 17"
    )


def anvil_binary() -> str:
    """Path of anvil from the npm package, or a one-line install hint."""
    matches = sorted(glob.glob(str(REPO_ROOT / "node_modules/@foundry-rs/anvil-*/bin/anvil")))
    if not matches:
        raise PrerequisiteMissing("anvil not found: run `make install` (npm ci installs @foundry-rs/anvil)")
    return matches[0]


def _as_server_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; drop to the `postgres` user when we are root.
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVER_USER, "--", *command]
    return command


# ---------------------------------------------------------------- PostgreSQL


def start_postgres(layout: StackLayout) -> None:
    """Initialise (first time) and start a private PostgreSQL; create the database."""
    data = layout.runtime_dir / "pgdata"
    log_path = layout.logs / "postgres.log"
    if not port_open(layout.postgres_port):
        if not (data / "PG_VERSION").exists():
            layout.runtime_dir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(layout.runtime_dir, SERVER_USER, SERVER_USER)
            subprocess.run(
                _as_server_user([postgres_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                 "--no-sync"]),
                check=True, stdout=subprocess.DEVNULL,
            )
        layout.logs.mkdir(parents=True, exist_ok=True)
        server_log = layout.runtime_dir / "server.log"
        options = (
            f"-p {layout.postgres_port} -k {layout.runtime_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        subprocess.run(
            _as_server_user([postgres_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(server_log),
                             "-w", "-t", "60", "start"]),
            check=True, stdout=subprocess.DEVNULL,
        )
    wait_until(lambda: port_open(layout.postgres_port), "PostgreSQL", 30, log_path)
    create_database(layout)


def create_database(layout: StackLayout, name: str = DATABASE) -> None:
    """Create the stack's database when it is missing; refuse one that does not collate as Cloud SQL's."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(
        f"postgresql+pg8000://postgres@127.0.0.1:{layout.postgres_port}/postgres",
        isolation_level="AUTOCOMMIT",
    )
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if not exists:
                conn.execute(sqlalchemy.text(create_database_statement(name)))
            database = conn.execute(sqlalchemy.text(
                "SELECT pg_encoding_to_char(encoding) AS encoding, to_jsonb(d) AS row FROM pg_database d "
                "WHERE datname = :name"), {"name": name}).one()
            # PostgreSQL 17 renamed daticulocale to datlocale.
            locale = (database.encoding, database.row["datlocprovider"],
                      database.row.get("daticulocale", database.row.get("datlocale")))
            if locale != (DATABASE_ENCODING, "i", DATABASE_ICU_LOCALE):
                raise ServiceFailed(
                    f"the stack's database {name} was created before it collated as Cloud SQL does "
                    f"(encoding, provider, ICU locale: {locale}); drop its data (`make down`, or `make test-down` "
                    f"for the test stacks) and start again")
    finally:
        engine.dispose()


def create_database_statement(name: str) -> str:
    """CREATE DATABASE `name`, collating as Cloud SQL's databases do."""
    return f"CREATE DATABASE {name} TEMPLATE template0 {DATABASE_LOCALE}"


def stop_postgres(layout: StackLayout) -> None:
    """Stop the private PostgreSQL (fast shutdown)."""
    data = layout.runtime_dir / "pgdata"
    if (data / "postmaster.pid").exists():
        subprocess.run(
            _as_server_user([postgres_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )


def restart_postgres(layout: StackLayout) -> None:
    """Start PostgreSQL again after `stop_postgres` (used by the fault tests)."""
    start_postgres(layout)


def allow_function_logins(layout: StackLayout, roles: list[str]) -> None:
    """Locally, each function's NOLOGIN role may log in directly (in GCP its IAM user is granted it)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(layout.database_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for role in roles:
                conn.execute(sqlalchemy.text(f"ALTER ROLE {role} LOGIN"))
    finally:
        engine.dispose()


# ---------------------------------------------------------------- Pub/Sub emulator


def start_emulator(layout: StackLayout, pid: int | None) -> int:
    """Start the Pub/Sub emulator unless it already answers; return its pid."""
    log_path = layout.logs / "pubsub-emulator.log"
    if pid and port_open(layout.pubsub_port):
        return pid
    binary = emulator_binary()
    if not shutil.which("java"):
        raise PrerequisiteMissing(
            "Java not found: the Pub/Sub emulator needs `apt-get install openjdk-17-jre-headless`")
    pid = spawn([binary, "--host=127.0.0.1", f"--port={layout.pubsub_port}"], log_path)
    wait_until(lambda: requests.get(f"http://{layout.pubsub_host}/", timeout=1).ok,
               "Pub/Sub emulator", 60, log_path, pid)
    return pid


# ---------------------------------------------------------------- anvil


# anvil keeps the states of the latest 500 blocks in memory and, by default, writes the states of older blocks
# to disk (under ~/.foundry/anvil/tmp, left behind when it stops): a whole-state dump per block, up to 46 MB
# each once a few bench-sized chains (10,000 escrows each) share the stack's anvil. Five such chains on one
# test stack wrote 76 GB in 20 minutes and filled the disk. The stack needs no state that old: every read
# the platform makes is at most the confirmation depth, a reorg's depth or the reconciler's pinned block
# behind the head. So nothing is written; a read of an older state is refused ("BlockOutOfRangeError").
# anvil may still make an empty states directory (a CI run left two in ~/.foundry/anvil/tmp): in the
# stack's runtime directory, `down` deletes it with the rest.
ANVIL_STATES_ON_DISK = 0


def start_anvil(layout: StackLayout, pid: int | None) -> tuple[int, bool]:
    """Start anvil unless it already answers; return its pid and whether it is a fresh chain."""
    log_path = layout.logs / "anvil.log"
    if pid and port_open(layout.anvil_port):
        return pid, False
    pid = spawn([anvil_binary(), "--host", "127.0.0.1", "--port", str(layout.anvil_port), "--silent",
                 "--max-persisted-states", str(ANVIL_STATES_ON_DISK),
                 "--cache-path", str(layout.runtime_dir / "anvil-states")], log_path)

    def answers() -> bool:
        reply = requests.post(layout.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, timeout=1)
        return reply.ok

    wait_until(answers, "anvil", 30, log_path, pid)
    return pid, True


# ---------------------------------------------------------------- local vendor servers


LOCAL_VENDORS = {
    # name: (module, port offset from the layout's base port)
    "coingecko": ("shared.stack.coingecko_server", 3),
    "sendgrid": ("shared.stack.sendgrid_server", 4),
    "twilio": ("shared.stack.twilio_server", 5),
    "ofac": ("shared.stack.ofac_server", 6),
}


def start_vendor(layout: StackLayout, name: str, pid: int | None, args: list[str] = ()) -> tuple[int, bool]:
    """Start one local vendor server unless it already answers; return its pid and whether it is new."""
    module, offset = LOCAL_VENDORS[name]
    port = layout.base_port + offset
    log_path = layout.logs / f"{name}.log"
    if pid and port_open(port):
        return pid, False
    pid = spawn([sys.executable, "-m", module, "--port", str(port), *args], log_path, cwd=REPO_ROOT)
    wait_until(lambda: port_open(port), f"local {name} server", 30, log_path, pid)
    return pid, True


def stop(pid: int | None) -> None:
    """Stop a service started with `spawn`."""
    stop_group(pid)
