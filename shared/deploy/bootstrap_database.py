"""The database bootstrap, once, as Cloud SQL's built-in admin: give the migrator what it needs.

    gcloud secrets versions access latest --secret db-admin-password \\
      | python -m shared.deploy.bootstrap_database --host 127.0.0.1 --port 5432 \\
          --migrator "db-migrator@<project>.iam" --password-stdin

A new Cloud SQL IAM database user has no privileges, and the migrations must create roles, schemas and
`alembic_version` in `public` (PostgreSQL 15 no longer lets everyone create there). The built-in
`postgres` user, whose password is kept in Secret Manager (`db-admin-password`) and read from standard
input here, never from the command line, grants them. Safe to repeat. Connect through the Cloud SQL Auth
Proxy *without* `--auto-iam-authn` (this login uses a password).
"""

from __future__ import annotations

import argparse
import sys

import sqlalchemy


def grants(migrator: str, database: str) -> list[str]:
    """The statements that let `migrator` run the migrations on `database` (identifiers quoted)."""
    user, db = _quote(migrator), _quote(database)
    return [
        # The migrations create one NOLOGIN role per domain and grant them to the functions' users. Role
        # attributes are not inherited through membership (of cloudsqlsuperuser, say): it is set here.
        f"ALTER ROLE {user} WITH CREATEROLE",
        f"GRANT CREATE ON DATABASE {db} TO {user}",
        f"GRANT CREATE ON SCHEMA public TO {user}",
    ]


def bootstrap(url: sqlalchemy.URL, migrator: str) -> list[str]:
    """Run the grants as the admin at `url`; return them."""
    statements = grants(migrator, url.database or "escrow")
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", hide_parameters=True)
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(sqlalchemy.text(statement))
    finally:
        engine.dispose()
    return statements


def _quote(identifier: str) -> str:
    if not identifier or "\x00" in identifier:
        raise SystemExit(f"not a usable identifier: {identifier!r}")
    return '"' + identifier.replace('"', '""') + '"'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--database", default="escrow")
    parser.add_argument("--admin", default="postgres", help="the built-in admin user")
    parser.add_argument("--migrator", required=True, help="the migrator's IAM database user")
    parser.add_argument("--password-stdin", action="store_true", help="read the admin's password from stdin")
    args = parser.parse_args()
    password = sys.stdin.read().rstrip("\n") if args.password_stdin else None
    url = sqlalchemy.URL.create("postgresql+pg8000", username=args.admin, password=password, host=args.host,
                                port=args.port, database=args.database)
    for statement in bootstrap(url, args.migrator):
        print(statement)


if __name__ == "__main__":
    main()
