"""notify: margin events to email (SendGrid), SMS (Twilio) and signed webhooks, with delivery tracking."""
