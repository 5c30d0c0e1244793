"""The Ethereum adapter: web3 over HTTP, the escrow contract's ABI and log decoding."""
