"""assess-margin: the risk engine's own escrow projection, health factors, tiers and portfolios."""
