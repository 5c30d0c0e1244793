#!/usr/bin/env bash
# The system packages `make test` needs, on top of Cloud Build's pinned google-cloud-cli "emulators"
# image (Debian 12 with gcloud, the Pub/Sub emulator and Java): PostgreSQL 15 server binaries, Node
# and npm for anvil and solc, and venv for Python 3.11. Each Cloud Build step is a fresh container, so
# every step that needs them runs this; /workspace (.venv, node_modules) persists between steps.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql-15 nodejs npm python3-venv make
