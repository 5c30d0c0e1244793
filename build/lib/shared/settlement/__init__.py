"""settle: the escrow records and their state machine."""
