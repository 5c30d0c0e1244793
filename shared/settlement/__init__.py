"""settle: the escrow records and their state machine."""

# The database schema this domain owns (its role writes only here).
SCHEMA = "settlement"
