"""Reads what assess-margin wrote for one escrow."""

from __future__ import annotations

import sqlalchemy

from shared.stack.chain_driver import wait_for


def _rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(sql), params).all()


def position(engine, contract: str, escrow_id: int):
    rows = _rows(engine, "SELECT * FROM risk.positions WHERE contract = :c AND escrow_id = :i",
                 c=contract, i=escrow_id)
    return rows[0] if rows else None


def wait_position(engine, contract: str, escrow_id: int, state: str, timeout: float = 30.0):
    """The escrow's risk projection once it reached `state`."""
    def reached():
        row = position(engine, contract, escrow_id)
        return row if row is not None and row.state == state else None
    return wait_for(reached, f"risk projection of escrow {escrow_id} in state {state}", timeout)


def history(engine, contract: str, escrow_id: int) -> list:
    """The position's recorded assessments, oldest first: a snapshot at each change of the escrow, and the
    margin event of each price that changed its tier."""
    return _rows(engine, "SELECT * FROM risk.position_history WHERE contract = :c AND escrow_id = :i "
                 "ORDER BY recorded_at", c=contract, i=escrow_id)


def health(engine, contract: str, escrow_id: int):
    """The open position's health factor at its asset's current price, and its tier (None once closed)."""
    rows = _rows(engine, "SELECT * FROM risk.position_health WHERE contract = :c AND escrow_id = :i",
                 c=contract, i=escrow_id)
    return rows[0] if rows else None


def margin_events(engine, contract: str, escrow_id: int) -> list:
    return _rows(engine, "SELECT * FROM risk.margin_events WHERE contract = :c AND escrow_id = :i "
                 "ORDER BY occurred_at, event_id", c=contract, i=escrow_id)


def portfolio(engine, depositor: str):
    rows = _rows(engine, "SELECT * FROM risk.portfolios WHERE depositor = :d", d=depositor)
    return rows[0] if rows else None


def applied_price(engine, price_event_id: str):
    """A price as assess-margin applied it, with its provenance."""
    [row] = _rows(engine, "SELECT * FROM risk.applied_prices WHERE price_event_id = :e", e=price_event_id)
    return row
