"""relay: escrow contract logs from the chain, published as events on settlement.events.v1."""
