"""The webhook channel connects to the address the SSRF guard vetted, never to a second lookup's answer.

Two local receivers listen on the same port: the endpoint on 127.0.0.1, and an "internal service" on
127.0.0.2. The resolver answers the endpoint's name with 127.0.0.1 first and 127.0.0.2 on any later
lookup, as a rebinding attacker's DNS would. Everything stays on loopback (the local-stack flag admits it).
"""

import socket
from types import SimpleNamespace

from shared.notify.channels import PERMANENT, SENT, Outbound, WebhookChannel, endpoint_secret
from tests.support.relay import free_port
from tests.support.webhooks import WebhookReceiver


def rebinding_resolver(first: str, later: str):
    lookups = []

    def resolve(host, port, type=0):  # noqa: A002 - getaddrinfo's keyword
        lookups.append(host)
        address = first if len(lookups) == 1 else later
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    resolve.lookups = lookups
    return resolve


def _outbound(url: str) -> Outbound:
    return Outbound(delivery_id=1, event_id="e", recipient=url, subject="s", text="t", document={"k": "v"},
                    secret=endpoint_secret("key", "user"))


def test_the_request_goes_to_the_vetted_address_with_the_name_as_host():
    port = free_port()
    endpoint, internal = WebhookReceiver(port=port), WebhookReceiver(host="127.0.0.2", port=port)
    try:
        resolve = rebinding_resolver("127.0.0.1", "127.0.0.2")
        channel = WebhookChannel(SimpleNamespace(provider_timeout_seconds=5, webhook_allow_loopback=True),
                                 resolve=resolve)
        result = channel.send(_outbound(f"http://hooks.rebind.test:{port}/hook"))
        assert result.outcome == SENT, result
        assert resolve.lookups == ["hooks.rebind.test"]
        assert len(endpoint.received) == 1 and internal.received == []
        assert endpoint.received[0]["headers"]["host"] == f"hooks.rebind.test:{port}"
    finally:
        endpoint.close()
        internal.close()


def test_a_name_that_resolves_to_a_private_address_is_failed_with_the_reason():
    channel = WebhookChannel(SimpleNamespace(provider_timeout_seconds=5, webhook_allow_loopback=False),
                             resolve=rebinding_resolver("10.0.0.7", "10.0.0.7"))
    result = channel.send(_outbound("https://hooks.rebind.test/hook"))
    assert result.outcome == PERMANENT and "non-public" in result.detail


def test_an_unusable_url_never_raises_out_of_the_channel():
    channel = WebhookChannel(SimpleNamespace(provider_timeout_seconds=5, webhook_allow_loopback=False))
    for url in ("https://127.0.0.1:99999/x", "https://[::1/x", "https://u:p@example.org/", "not a url"):
        result = channel.send(_outbound(url))
        assert result.outcome == PERMANENT and result.detail.startswith("refused by the SSRF guard"), result
