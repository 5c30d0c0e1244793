"""The deployable artifacts run: each function's zip, unpacked into an empty directory, installed
into a fresh venv from its own requirements.txt, started with functions-framework and sent a real
message against the test stack. This is the zip Terraform uploads."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
import venv
import zipfile
from pathlib import Path

import pytest
import requests
from twilio.request_validator import RequestValidator

from shared.deploy.package import REPO_ROOT, build
from shared.stack.chain_driver import wait_for
from shared.stack.processes import port_open, spawn, stop_group
from shared.topology import compiled_manifest, load_topology
from tests.support.events import body, unique_escrow_created
from tests.support.relay import free_port

TICK = json.dumps({"source": "package smoke test"}).encode()
# An old price for a configured asset: assess-margin reads and records it, and changes nothing.
STALE_PRICE = {
    "event_id": "PriceUpdated:ETH:package-smoke-test", "event_type": "PriceUpdated", "schema_version": 1,
    "occurred_at": "2026-01-01T00:00:00+00:00", "correlation_id": "package-smoke-test", "causation_id": None,
    "payload": {"asset": "ETH", "token": "0x" + "00" * 20, "price": "1", "sequence": 0,
                "observed_at": "2026-01-01T00:00:00+00:00", "reason": "smoke test",
                "sources": [{"source": "chainlink", "price": "1", "round_id": "1",
                             "updated_at": "2026-01-01T00:00:00+00:00", "age_seconds": 0.0}]}}
# A registration: notify projects the contact (no delivery, nothing sent).
REGISTRATION = {
    "event_id": "UserRegistered:package-smoke-test", "event_type": "UserRegistered", "schema_version": 1,
    "occurred_at": "2026-01-01T00:00:00+00:00", "correlation_id": "package-smoke-test", "causation_id": None,
    "payload": {"user_id": "package-smoke-test", "name": "Package Smoke", "date_of_birth": "1980-05-05",
                "country": "NL", "email": "smoke@example.org", "phone": "+31201234567",
                "wallet_addresses": ["0x" + "5a" * 20], "notification_channels": ["email"], "webhook_url": None}}
# screen-compliance screens it against the loaded list (a clean adult: APPROVED) and publishes the result.
SCREENED_REGISTRATION = {
    **REGISTRATION, "event_id": "UserRegistered:package-smoke-screening",
    "payload": {**REGISTRATION["payload"], "user_id": "package-smoke-screening",
                "identity_document": {"type": "passport", "issuing_country": "NL", "expires_on": "2031-01-31",
                                      "number_last4": "4567"}}}
# One shard of a rescreening that finds nobody behind (the users are screened against the newest list).
RESCREEN_SHARD = {
    "event_id": "RescreenRequested:package-smoke-test", "event_type": "RescreenRequested", "schema_version": 1,
    "occurred_at": "2026-01-01T00:00:00+00:00", "correlation_id": "package-smoke-test", "causation_id": None,
    "payload": {"snapshot_id": 1, "generation": 1, "shard": 0, "shards": 65536, "key_from": 0, "key_to": 1}}
MESSAGES = {"relay": TICK, "fetch-price": TICK, "settle": None, "assess-margin": json.dumps(STALE_PRICE).encode(),
            "notify": json.dumps(REGISTRATION).encode(),
            "screen-compliance": json.dumps(SCREENED_REGISTRATION).encode(), "refresh-sanctions": TICK,
            "rescreen": json.dumps(RESCREEN_SHARD).encode(), "reconcile": TICK}


def _push(port: int, data: bytes) -> requests.Response:
    event = {"message": {"data": base64.b64encode(data).decode(), "messageId": "package-smoke",
                         "publishTime": "2026-01-01T00:00:00Z"},
             "subscription": "projects/local-escrow/subscriptions/package-smoke"}
    return requests.post(f"http://127.0.0.1:{port}/", json=event, timeout=60, headers={
        "ce-id": "package-smoke", "ce-source": "//pubsub.googleapis.com/", "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished"})


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """Every wheel any function's requirements resolve to, downloaded once (from pip's cache and the
    index `make install` used), so each venv below installs offline in seconds instead of resolving
    against the index again."""
    house = tmp_path_factory.mktemp("wheelhouse")
    requirements = sorted({REPO_ROOT / f.source / "requirements.txt" for f in load_topology().functions})
    downloaded = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--dest", str(house),
         *[arg for path in requirements for arg in ("-r", str(path))]],
        capture_output=True, text=True, timeout=900)
    assert downloaded.returncode == 0, downloaded.stderr[-2000:]
    return house


@pytest.fixture(scope="module")
def venv_for(tmp_path_factory, wheelhouse: Path):
    """A fresh venv with exactly these requirements installed (resolved from them alone: a dependency
    they forget is missing here too); functions with the same requirements.txt share one
    (screen-compliance, refresh-sanctions and rescreen do), which is what each would get."""
    made: dict[str, Path] = {}

    def install(requirements: Path) -> Path:
        text = requirements.read_text()
        if text not in made:
            environment = tmp_path_factory.mktemp("venv")
            venv.create(environment, with_pip=False)  # this venv's pip installs into it: no ensurepip
            installed = subprocess.run(
                [sys.executable, "-m", "pip", "--python", str(environment / "bin" / "python"), "install",
                 "--quiet", "--disable-pip-version-check", "--no-compile", "--no-index",
                 "--find-links", str(wheelhouse), "-r", str(requirements)],
                capture_output=True, text=True, timeout=600)
            assert installed.returncode == 0, installed.stderr[-2000:]
            made[text] = environment
        return made[text]
    return install


@pytest.mark.parametrize("name", [f.name for f in load_topology().functions])
def test_the_packaged_function_installs_starts_and_handles_a_message(stack, venv_for, tmp_path: Path, name: str):
    function = stack.topology.function(name)
    archive = build(function, tmp_path / "dist")
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(unpacked)
    assert (unpacked / "main.py").exists() and (unpacked / "requirements.txt").exists()
    assert not (unpacked / "shared" / "stack").exists()
    manifest = unpacked / "shared" / "topology.yaml"
    if manifest.exists():  # the reconciler's: shipped compiled too, from this very manifest
        assert manifest.with_suffix(".json").read_bytes() == compiled_manifest(manifest.read_bytes())

    environment = venv_for(unpacked / "requirements.txt")

    port = free_port()
    env = stack.function_env(function, stack.layout.read_state()["escrow_address"])
    env.update(PYTHONPATH=str(unpacked), PATH=f"{environment / 'bin'}:{env['PATH']}")
    log = stack.layout.logs / f"package-{name}.log"
    pid = spawn([str(environment / "bin" / "functions-framework"), f"--target={function.entry_point}",
                 "--source=main.py", "--host=127.0.0.1", f"--port={port}"], log, env=env, cwd=unpacked)
    try:
        wait_for(lambda: port_open(port), f"packaged {name} to listen (log: {log})", timeout=60)
        if function.name == "api":  # a registration: validation (checksummed wallets), a write and a publish
            reply = requests.post(f"http://127.0.0.1:{port}/users", timeout=60, json={
                "name": "Package Smoke", "date_of_birth": "1980-05-05", "country": "NL",
                "email": f"smoke-{uuid.uuid4().hex[:8]}@example.org", "phone": "+31201234567",
                "wallet_addresses": ["0x" + uuid.uuid4().hex + "00000000"], "notification_channels": ["email"],
                "identity_document": {"type": "passport", "number": "NP1234567", "issuing_country": "NL",
                                      "expires_on": "2031-01-31"}})
        elif function.name == "callbacks":  # a Twilio status callback, signed as Twilio signs it
            form = {"MessageSid": "SM" + uuid.uuid4().hex, "MessageStatus": "delivered"}
            signature = RequestValidator(env["TWILIO_AUTH_TOKEN"]).compute_signature(
                env["TWILIO_STATUS_CALLBACK_URL"], form)
            reply = requests.post(f"http://127.0.0.1:{port}/twilio/status", data=form, timeout=60,
                                  headers={"X-Twilio-Signature": signature})
        else:
            reply = _push(port, MESSAGES[name] or body(unique_escrow_created()))
        assert reply.status_code < 300, (reply.status_code, log.read_text()[-2000:])
        assert "compiled manifest ignored" not in log.read_text()
    finally:
        stop_group(pid)
