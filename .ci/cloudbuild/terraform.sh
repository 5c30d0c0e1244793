#!/bin/sh
# Deploy steps (POSIX sh: the pinned terraform image has no bash). On main: `identities` applies only the
# functions' service accounts and IAM database users (the migrations then grant them their roles) and the
# secrets (check-secrets.sh then refuses to go on while one has no value), `all` applies everything. On any other branch, and in a manual build (Cloud Build sets BRANCH_NAME only for
# triggered builds), `all` plans and `identities` does nothing. terraform.tfvars was fetched from the
# state bucket by the package step; it never lives in the repository.
set -eu
: "${PROJECT_ID:?}" "${REGION:?}" "${STATE_BUCKET:?}"
STAGE="${1:?identities or all}"
BRANCH="${BRANCH_NAME:-}"
cd terraform
terraform init -input=false -backend-config="bucket=${STATE_BUCKET}" -backend-config="prefix=escrow-platform"
terraform validate
VARS="-var project_id=${PROJECT_ID} -var region=${REGION}"
if [ "$BRANCH" != "main" ]; then
  echo "branch '${BRANCH:-none: a manual build}': plan only"
  [ "$STAGE" = "all" ] && terraform plan -input=false $VARS
  exit 0
fi
if [ "$STAGE" = "identities" ]; then
  terraform apply -input=false -auto-approve $VARS \
    -target=google_service_account.function -target=google_sql_user.function -target=google_sql_user.migrator \
    -target=google_secret_manager_secret.secret
else
  terraform apply -input=false -auto-approve $VARS
fi
