#!/usr/bin/env bash
# Deploy step, before the full apply: refuse to deploy functions that would read an empty secret. Every
# secret the manifest declares must have an enabled version (the identities step created the secrets; an
# operator adds the values, which never pass through Terraform or the repository). Only on main.
set -euo pipefail
: "${PROJECT_ID:?}"
if [[ "${BRANCH_NAME:-}" != "main" ]]; then
  echo "branch '${BRANCH_NAME:-none: a manual build}': nothing is deployed, secrets not checked"
  exit 0
fi
missing=()
for secret in $(.venv/bin/python -m shared.topology secret-ids); do
  if [[ -z "$(gcloud secrets versions list "$secret" --project "$PROJECT_ID" --filter='state=ENABLED' \
        --limit=1 --format='value(name)')" ]]; then
    missing+=("$secret")
  fi
done
if (( ${#missing[@]} )); then
  echo "refusing to deploy: no enabled version of ${missing[*]}. Add each value first, e.g." >&2
  echo "  printf '%s' \"\$VALUE\" | gcloud secrets versions add ${missing[0]} --project $PROJECT_ID --data-file=-" >&2
  exit 1
fi
echo "every secret the manifest declares has a value"
