"""At-least-once in, exactly-once effects: the inbox, the outbox and the consumer wrapper."""

# Inbox outcomes.
APPLIED = "applied"
REJECTED = "rejected"
