#!/usr/bin/env bash
# Deploy step: run the Alembic migrations against Cloud SQL through the Auth Proxy, logged in (IAM) as the
# migrator service account, which the build's identity impersonates (the database user is the migrator's,
# not the build's), then grant each function's IAM database user its role. Only on main: other branches
# and manual builds (no BRANCH_NAME) plan, and must not change the production schema.
set -euo pipefail
: "${PROJECT_ID:?}" "${SQL_INSTANCE:?}" "${MIGRATOR_DB_USER:?}" "${MIGRATOR_SA:?}" "${DB_NAME:?}"
if [[ "${BRANCH_NAME:-}" != "main" ]]; then
  echo "branch '${BRANCH_NAME:-none: a manual build}': migrations are applied only from main"
  exit 0
fi
PROXY_VERSION=v2.14.1
curl -fsSL -o /tmp/cloud-sql-proxy \
  "https://storage.googleapis.com/cloud-sql-connectors/cloud-sql-proxy/${PROXY_VERSION}/cloud-sql-proxy.linux.amd64"
chmod +x /tmp/cloud-sql-proxy
/tmp/cloud-sql-proxy --auto-iam-authn --impersonate-service-account="$MIGRATOR_SA" --private-ip --port 5432 \
  "$SQL_INSTANCE" &
proxy=$!
trap 'kill $proxy' EXIT
for _ in $(seq 30); do (echo > /dev/tcp/127.0.0.1/5432) 2>/dev/null && break; sleep 1; done
.venv/bin/python -m shared.deploy.migrate \
  --url "postgresql+pg8000://${MIGRATOR_DB_USER}@127.0.0.1:5432/${DB_NAME}" --project "$PROJECT_ID"
