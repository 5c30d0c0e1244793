"""Each function's role may write its own schema and nothing else (real PostgreSQL)."""

import pytest
import sqlalchemy
from sqlalchemy.exc import ProgrammingError


@pytest.fixture
def settle_role(stack):
    engine = sqlalchemy.create_engine(stack.layout.database_url("fn_settle"))
    yield engine
    engine.dispose()


def test_settle_role_cannot_write_the_relay_schema(settle_role):
    with pytest.raises(ProgrammingError, match="permission denied"):
        with settle_role.begin() as conn:
            conn.execute(sqlalchemy.text(
                "INSERT INTO relay.checkpoints (chain_id, contract, block_number, block_hash) "
                "VALUES (1, '0xdead', 1, '0x00')"
            ))


def test_settle_role_cannot_create_tables_in_its_own_schema(settle_role):
    with pytest.raises(ProgrammingError, match="permission denied"):
        with settle_role.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE TABLE settlement.sneaky (id int)"))


def test_settle_role_writes_its_own_schema(settle_role, owner_engine):
    with settle_role.begin() as conn:
        conn.execute(sqlalchemy.text(
            "INSERT INTO settlement.inbox (consumer, dedupe_key, event_id, event_type, outcome) "
            "VALUES ('role-test', 'role-test-event', 'role-test-event', 'Probe', 'applied')"
        ))
    with owner_engine.begin() as conn:
        deleted = conn.execute(sqlalchemy.text(
            "DELETE FROM settlement.inbox WHERE consumer = 'role-test' RETURNING event_id"
        )).all()
    assert len(deleted) == 1


def test_relay_role_cannot_write_settlement(stack):
    engine = sqlalchemy.create_engine(stack.layout.database_url("fn_relay"))
    try:
        with pytest.raises(ProgrammingError, match="permission denied"):
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text("DELETE FROM settlement.escrows"))
    finally:
        engine.dispose()
