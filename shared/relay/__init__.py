"""relay: escrow contract logs from the chain, published as events on settlement.events.v1."""

# The database schema this domain owns (its role writes only here).
SCHEMA = "relay"
