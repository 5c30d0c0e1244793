"""notify: margin events to email (SendGrid), SMS (Twilio) and signed webhooks, with delivery tracking."""

# The database schema this domain owns (its role writes only here).
SCHEMA = "notify"
