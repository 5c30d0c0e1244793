"""The deploy's migration step, run before the functions deploy (never at cold start).

    cloud-sql-proxy --auto-iam-authn --private-ip --port 5432 "$INSTANCE_CONNECTION_NAME" &
    python -m shared.deploy.migrate --url "postgresql+pg8000://$MIGRATOR_DB_USER@127.0.0.1:5432/escrow" \\
        --project "$PROJECT_ID"

1. Alembic upgrades the schemas to head (as the migrator, the schemas' owner).
2. Each function's IAM database user (`fn-<name>@<project>.iam`, created by Terraform) is granted its
   domain role (`fn_relay`, …), so it can use its own schema and nothing else. Granting twice is
   harmless, so the step can run on every deploy.
"""

from __future__ import annotations

import argparse

import sqlalchemy

from shared.migrations.run import upgrade
from shared.topology import load_topology


def function_db_user(function_name: str, project_id: str) -> str:
    """The IAM database user of a function's service account (terraform/iam.tf: `fn-<name>`)."""
    return f"fn-{function_name}@{project_id}.iam"


def grant_function_roles(url: str, project_id: str) -> list[tuple[str, str]]:
    """GRANT each function's domain role to its IAM database user; return (role, user) pairs."""
    granted = []
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            for function in load_topology().functions:
                if function.db_role:
                    user = function_db_user(function.name, project_id)
                    conn.execute(sqlalchemy.text(f'GRANT {function.db_role} TO "{user}"'))
                    granted.append((function.db_role, user))
    finally:
        engine.dispose()
    return granted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of the migrator (through the Auth Proxy)")
    parser.add_argument("--project", required=True, help="GCP project id (names the functions' IAM users)")
    args = parser.parse_args()
    upgrade(args.url)
    for role, user in grant_function_roles(args.url, args.project):
        print(f"granted {role} to {user}")


if __name__ == "__main__":
    main()
