"""The local stack: real PostgreSQL, the Pub/Sub emulator, anvil and every function, from the manifest.

    python -m shared.stack up | down | status | demo

This package is a development tool; it is not packaged into the deployed functions.
"""
