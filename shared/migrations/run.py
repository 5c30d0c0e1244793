"""Run the migrations: `python -m shared.migrations.run --url postgresql+pg8000://...`.

The URL is the migrator's (the schema owner), never a function's role: function roles may not
create or alter anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sqlalchemy
from alembic import command
from alembic.config import Config

HERE = Path(__file__).parent


def alembic_config() -> Config:
    """An Alembic config pointing at this package's scripts."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision`.

    Each migration commits on its own (env.py's transaction_per_migration): one that fails leaves the
    database at the last one that succeeded, and a migration can build an index CONCURRENTLY in an
    autocommit block instead of blocking writes to a large table while the index builds.
    """
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of the migrator")
    parser.add_argument("--revision", default="head")
    args = parser.parse_args()
    upgrade(args.url, args.revision)


if __name__ == "__main__":
    main()
