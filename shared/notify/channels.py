"""The three channels. Each `send` returns what happened; none raises for a provider's answer.

- email: the `sendgrid` SDK (v3 mail/send), its host from the settings;
- sms: the `twilio` SDK (Messages), its API base URL from the settings through the SDK's own
  extension point, a custom HttpClient;
- webhook: an HTTP POST signed per the Standard Webhooks spec, behind an SSRF guard.

Outcomes: SENT; TRANSIENT (429, 5xx, timeouts, connection errors: retried up to a bound); PERMANENT
(any other 4xx, an invalid recipient, a refused URL: failed with the reason, never retried).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import ssl
import time
from dataclasses import dataclass

import certifi
import requests
import urllib3
from python_http_client.exceptions import HTTPError as SendGridHTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient

from shared.notify.settings import NotifySettings
from shared.notify.url_guard import Resolver, UnsafeUrl, VettedTarget, vet

SENT = "sent"
TRANSIENT = "transient"
PERMANENT = "permanent"

TWILIO_API = "https://api.twilio.com"


@dataclass(frozen=True)
class Outbound:
    """One delivery to attempt."""

    delivery_id: int
    event_id: str
    recipient: str
    subject: str
    text: str
    document: dict
    # Webhooks: the endpoint's signing secret (whsec_…).
    secret: str | None = None


@dataclass(frozen=True)
class SendResult:
    """What one attempt came to."""

    outcome: str
    provider_message_id: str | None = None
    status_code: int | None = None
    detail: str | None = None
    # The endpoint answered 410 Gone: do not call it again.
    disable_endpoint: bool = False


def _classify(status: int | None) -> str:
    return TRANSIENT if status is None or status == 429 or status >= 500 else PERMANENT


class EmailChannel:
    """Email through SendGrid's v3 mail/send."""

    def __init__(self, settings: NotifySettings) -> None:
        self.client = SendGridAPIClient(api_key=settings.sendgrid_api_key, host=settings.sendgrid_base_url)
        self.sender = settings.email_from

    def send(self, outbound: Outbound) -> SendResult:
        message = Mail(from_email=self.sender, to_emails=outbound.recipient, subject=outbound.subject,
                       plain_text_content=outbound.text)
        # Returned by SendGrid's event webhook with every event about this message.
        message.custom_arg = [CustomArg("delivery_id", str(outbound.delivery_id)),
                              CustomArg("event_id", outbound.event_id)]
        try:
            response = self.client.send(message)
        except SendGridHTTPError as exc:
            return SendResult(_classify(exc.status_code), status_code=exc.status_code, detail=_text(exc.body))
        except OSError as exc:
            return SendResult(TRANSIENT, detail=f"SendGrid unreachable: {exc}")
        return SendResult(SENT, response.headers.get("X-Message-Id"), response.status_code)


class _BaseUrlHttpClient(TwilioHttpClient):
    """The Twilio SDK's HTTP client, sending to `base_url` instead of api.twilio.com."""

    def __init__(self, base_url: str, timeout: float) -> None:
        # The SDK logs every request's headers at INFO; keep recipients out of the logs.
        quiet = logging.getLogger("twilio.http_client")
        quiet.setLevel(logging.WARNING)
        super().__init__(timeout=timeout, logger=quiet)
        self.base_url = base_url.rstrip("/")

    def request(self, method, url, *args, **kwargs):  # noqa: ANN001 - the SDK's signature
        if url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API):]
        return super().request(method, url, *args, **kwargs)


class SmsChannel:
    """SMS through Twilio's Messages resource."""

    def __init__(self, settings: NotifySettings) -> None:
        self.client = TwilioClient(settings.twilio_account_sid, settings.twilio_auth_token,
                                   http_client=_BaseUrlHttpClient(settings.twilio_base_url,
                                                                  settings.provider_timeout_seconds))
        self.sender = settings.sms_from
        self.status_callback = settings.twilio_status_callback_url

    def send(self, outbound: Outbound) -> SendResult:
        options = {"status_callback": self.status_callback} if self.status_callback else {}
        try:
            message = self.client.messages.create(to=outbound.recipient, from_=self.sender, body=outbound.text,
                                                  **options)
        except TwilioRestException as exc:
            return SendResult(_classify(exc.status), status_code=exc.status, detail=f"{exc.code}: {exc.msg}")
        except (TwilioException, requests.RequestException) as exc:
            return SendResult(TRANSIENT, detail=f"Twilio unreachable: {exc}")
        return SendResult(SENT, message.sid, 201)


def endpoint_secret(signing_key: str, user_id: str) -> str:
    """A user's webhook secret (Standard Webhooks `whsec_` form), derived from the platform key.

    Derived rather than stored: the secret never travels in an event and never sits in a table.
    """
    digest = hmac.new(signing_key.encode(), f"webhook:{user_id}".encode(), hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(digest).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class WebhookChannel:
    """Signed webhooks (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature).

    The URL is vetted by the SSRF guard after one DNS lookup, and the request goes to that vetted
    address; the name is kept for the Host header, TLS SNI and the certificate check. A second lookup,
    which could answer differently (DNS rebinding), is never made.
    """

    def __init__(self, settings: NotifySettings, resolve: Resolver = socket.getaddrinfo) -> None:
        self.timeout = settings.provider_timeout_seconds
        self.allow_loopback = settings.webhook_allow_loopback
        self.resolve = resolve
        self.tls = ssl.create_default_context(cafile=certifi.where())

    def send(self, outbound: Outbound) -> SendResult:
        try:
            target = vet(outbound.recipient, allow_loopback=self.allow_loopback, resolve=self.resolve)
        except UnsafeUrl as exc:
            return SendResult(PERMANENT, detail=f"refused by the SSRF guard: {exc}")
        assert outbound.secret, "a webhook delivery carries its endpoint's secret"
        message_id = f"msg_{outbound.delivery_id}"  # the same on every retry: receivers deduplicate on it
        body = json.dumps(outbound.document, separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(time.time())
        headers = {"host": target.host_header, "content-type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign(outbound.secret, message_id, timestamp, body)}
        try:
            reply = self._post(target, body, headers)
        except urllib3.exceptions.HTTPError as exc:
            return SendResult(TRANSIENT, detail=f"{type(exc).__name__}: {exc}")
        if 200 <= reply.status < 300:
            return SendResult(SENT, message_id, reply.status)
        if reply.status == 410:
            return SendResult(PERMANENT, status_code=410, detail="endpoint gone (410): disabled",
                              disable_endpoint=True)
        return SendResult(_classify(reply.status), status_code=reply.status, detail=_text(reply.data))

    def _post(self, target: VettedTarget, body: bytes, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        timeout = urllib3.Timeout(total=self.timeout)
        pool: urllib3.HTTPConnectionPool
        if target.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(target.address, target.port, timeout=timeout, retries=False,
                                               ssl_context=self.tls, server_hostname=target.host,
                                               assert_hostname=target.host)
        else:
            pool = urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False)
        with pool:
            return pool.urlopen("POST", target.path, body=body, headers=headers, redirect=False,
                                preload_content=True, assert_same_host=False)


def _text(body) -> str:
    return body.decode(errors="replace")[:300] if isinstance(body, bytes) else str(body)[:300]
