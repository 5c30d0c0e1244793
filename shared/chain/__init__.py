"""The Ethereum adapter: plain JSON-RPC reads (rpc.py), one-word ABI decoding from the compiled artifacts
(abi.py), the escrow's log payloads (escrow_logs.py) and relay's reader (reader.py); web3 only in
client.py, for what writes to the chain (the local stack and tests)."""
