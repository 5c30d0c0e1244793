"""assess-margin: the risk engine's own escrow projection, health factors, tiers and portfolios."""

# The database schema this domain owns (its role writes only here).
SCHEMA = "risk"
