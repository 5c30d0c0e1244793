"""notify's and callbacks' settings: where messages go, how hard notify tries, who may call back."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import EnvReader

# A provider call (SendGrid, Twilio, a webhook) that takes longer than this is a transient failure.
DEFAULT_NOTIFY_PROVIDER_TIMEOUT_SECONDS = 10.0
# Attempts per delivery before a transient failure becomes final.
DEFAULT_NOTIFY_MAX_ATTEMPTS = 5
DEFAULT_NOTIFY_ATTEMPTS_PER_CALL = 3


@dataclass(frozen=True)
class NotifySettings:
    """Where `notify` sends email, SMS and webhooks, and how hard it tries."""

    sendgrid_base_url: str
    sendgrid_api_key: str
    email_from: str
    twilio_base_url: str
    twilio_account_sid: str
    twilio_auth_token: str
    sms_from: str
    twilio_status_callback_url: str | None
    webhook_signing_key: str
    # Local stack and tests only: webhooks to http://127.0.0.1 pass the SSRF guard.
    webhook_allow_loopback: bool
    provider_timeout_seconds: float
    max_attempts: int
    # Quick attempts inside one invocation before Pub/Sub's redelivery takes over.
    attempts_per_call: int

    @classmethod
    def read(cls, reader: EnvReader) -> NotifySettings:
        """Read the notify variables, recording what is missing."""
        loopback = (reader.optional("WEBHOOK_ALLOW_LOOPBACK") or "false").lower()
        if loopback not in ("true", "false"):
            reader.malformed.append(f"WEBHOOK_ALLOW_LOOPBACK={loopback!r} is not true or false")
        return cls(
            sendgrid_base_url=reader.optional("SENDGRID_BASE_URL") or "https://api.sendgrid.com",
            sendgrid_api_key=reader.required("SENDGRID_API_KEY"),
            email_from=reader.required("EMAIL_FROM"),
            twilio_base_url=reader.optional("TWILIO_BASE_URL") or "https://api.twilio.com",
            twilio_account_sid=reader.required("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=reader.required("TWILIO_AUTH_TOKEN"),
            sms_from=reader.required("SMS_FROM"),
            twilio_status_callback_url=reader.optional("TWILIO_STATUS_CALLBACK_URL"),
            webhook_signing_key=reader.required("WEBHOOK_SIGNING_KEY"),
            webhook_allow_loopback=loopback == "true",
            provider_timeout_seconds=reader.number("NOTIFY_PROVIDER_TIMEOUT_SECONDS",
                                                   DEFAULT_NOTIFY_PROVIDER_TIMEOUT_SECONDS),
            max_attempts=reader.integer("NOTIFY_MAX_ATTEMPTS", reader.optional("NOTIFY_MAX_ATTEMPTS"),
                                        DEFAULT_NOTIFY_MAX_ATTEMPTS),
            attempts_per_call=reader.integer("NOTIFY_ATTEMPTS_PER_CALL", reader.optional("NOTIFY_ATTEMPTS_PER_CALL"),
                                             DEFAULT_NOTIFY_ATTEMPTS_PER_CALL),
        )


@dataclass(frozen=True)
class CallbackSettings:
    """How the public callbacks endpoint checks who is calling."""

    # SendGrid's event webhook verification key (base64 DER, as SendGrid shows it).
    sendgrid_webhook_public_key: str
    twilio_auth_token: str
    # The exact URL Twilio calls (part of what X-Twilio-Signature signs).
    twilio_status_callback_url: str

    @classmethod
    def read(cls, reader: EnvReader) -> CallbackSettings:
        """Read the callback variables, recording what is missing."""
        return cls(
            sendgrid_webhook_public_key=reader.required("SENDGRID_WEBHOOK_PUBLIC_KEY"),
            twilio_auth_token=reader.required("TWILIO_AUTH_TOKEN"),
            twilio_status_callback_url=reader.required("TWILIO_STATUS_CALLBACK_URL"),
        )
