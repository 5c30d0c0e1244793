"""The reconciler: redrives dead letters, and compares the domains with each other and with the chain."""

# The database schema this domain owns (its role writes only here).
SCHEMA = "ops"
