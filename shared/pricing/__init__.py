"""fetch-price: quotes from CoinGecko and Chainlink, guarded, aggregated, stored and published."""

# The database schema this domain owns (its role writes only here).
SCHEMA = "pricing"
