#!/bin/sh
# Deploy step (POSIX sh: the pinned terraform image has no bash): `terraform apply` on main,
# `terraform plan` on any other branch. terraform.tfvars was fetched from the state bucket by the
# previous step; it never lives in the repository.
set -eu
: "${PROJECT_ID:?}" "${REGION:?}" "${STATE_BUCKET:?}" "${BRANCH_NAME:?}"
cd terraform
terraform init -input=false -backend-config="bucket=${STATE_BUCKET}" -backend-config="prefix=escrow-platform"
terraform validate
if [ "$BRANCH_NAME" = "main" ]; then
  terraform apply -input=false -auto-approve -var "project_id=${PROJECT_ID}" -var "region=${REGION}"
else
  terraform plan -input=false -var "project_id=${PROJECT_ID}" -var "region=${REGION}"
fi
