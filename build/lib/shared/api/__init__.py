"""The HTTP API: user registration and escrow queries (served by functions/api)."""
