"""fetch-price: quotes from CoinGecko and Chainlink, guarded, aggregated, stored and published."""
