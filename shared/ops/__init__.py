"""Operator tools that read across the domains (never shipped in a function's zip)."""
