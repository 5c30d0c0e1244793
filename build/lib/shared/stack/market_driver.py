"""Moves the local market (the Chainlink feed on anvil and the local CoinGecko) and ticks fetch-price
(demo and tests)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import sqlalchemy

from shared.stack.chain_driver import transact, wait_for
from shared.stack.stack import COINGECKO_ETH, FEED_DECIMALS


class Market:
    """The ETH/USD market the stack's fetch-price reads, and what pricing and risk made of it.

    `publish(topic, data)` publishes one message (the tests' bus, or a publisher client in the demo).
    """

    def __init__(self, stack, publish: Callable[[str, bytes], object], engine) -> None:
        self.stack, self.publish, self.engine = stack, publish, engine
        self.w3 = stack.web3()
        self.feed = stack.eth_usd_feed()
        self.coingecko = stack.coingecko()

    def quote(self, usd: str, *, chainlink: str | None = None, chainlink_updated_at: int | None = None) -> None:
        """CoinGecko quotes `usd`; Chainlink answers `chainlink` (default the same), in a new round."""
        self.coingecko.set_price(COINGECKO_ETH, usd)
        answer = int(Decimal(chainlink or usd).scaleb(FEED_DECIMALS))
        owner = self.w3.eth.accounts[0]
        if chainlink_updated_at is None:
            transact(self.w3, self.feed.functions.updateAnswer(answer), owner)
        else:
            next_round = self.feed.functions.latestRound().call() + 1
            transact(self.w3, self.feed.functions.updateRoundData(
                next_round, answer, chainlink_updated_at, chainlink_updated_at), owner)

    def last_decision_id(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sqlalchemy.text("SELECT coalesce(max(id), 0) FROM pricing.decisions")).scalar()

    def tick(self, timeout: float = 30.0):
        """Publish one prices.tick and return the decision fetch-price recorded for it."""
        after = self.last_decision_id()
        self.publish("prices.tick", b'{"source": "market driver"}')
        return wait_for(lambda: self.decision_after(after), "a price decision", timeout)

    def decision_after(self, after: int):
        with self.engine.connect() as conn:
            return conn.execute(sqlalchemy.text(
                "SELECT * FROM pricing.decisions WHERE id > :after ORDER BY id LIMIT 1"), {"after": after}).first()

    def observations(self, fetch_id) -> dict:
        """source -> observation row of one fetch."""
        with self.engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT * FROM pricing.observations WHERE fetch_id = :f"),
                                {"f": fetch_id}).all()
        return {row.source: row for row in rows}

    def settle_at(self, usd: str) -> None:
        """Make `usd` the accepted price (confirming it if it is a jump) and wait until risk applied it."""
        self.quote(usd)
        decision = self.tick()
        if decision.status == "held":
            decision = self.tick()
        assert decision.status == "accepted", decision
        self.wait_risk_caught_up()

    def wait_risk_caught_up(self, timeout: float = 30.0) -> None:
        """Until assess-margin applied the last published price."""
        def caught_up():
            with self.engine.connect() as conn:
                return conn.execute(sqlalchemy.text(
                    "SELECT s.sequence = coalesce(r.sequence, 0) FROM pricing.asset_state s "
                    "LEFT JOIN risk.asset_prices r ON r.asset_symbol = s.asset WHERE s.asset = 'ETH'")).scalar()
        wait_for(caught_up, "assess-margin to apply the last published price", timeout)
