"""The SSRF guard (every refused form, at registration and at send) and the Standard Webhooks signature."""

import socket

import pytest

from shared.notify.channels import sign
from shared.notify.url_guard import UnsafeUrl, url_problem, vet


def resolver(*answers: str):
    """A resolver answering each name with `answers`, counting its lookups."""
    calls = []

    def resolve(host, port, type=0):  # noqa: A002 - getaddrinfo's keyword
        calls.append(host)
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers]

    resolve.calls = calls
    return resolve


REFUSED_LITERALS = [
    ("http://example.com/hook", "https"),
    ("https://127.0.0.1/hook", "non-public"),
    ("https://10.1.2.3/hook", "non-public"),
    ("https://169.254.169.254/latest/meta-data", "non-public"),
    ("https://[::1]/hook", "non-public"),
    ("https://192.168.0.10/hook", "non-public"),
    ("https://100.64.0.1/hook", "non-public"),  # carrier-grade NAT
    ("ftp://127.0.0.1/hook", "https"),
    ("https://[::127.0.0.1]/x", "non-public"),  # IPv4-compatible
    ("https://[::ffff:127.0.0.1]/x", "non-public"),  # IPv4-mapped
    ("https://[64:ff9b::a9fe:a9fe]/x", "non-public"),  # NAT64 of the metadata address
    ("https://[64:ff9b:1::a00:1]/x", "non-public"),  # local-use NAT64
    ("https://[2002:a9fe:a9fe::]/x", "non-public"),  # 6to4
    ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x", "non-public"),  # Teredo
    ("https://[fd00::1]/x", "non-public"),  # unique-local
    ("https://[fe80::1]/x", "non-public"),  # link-local
    ("https://[ff02::1]/x", "non-public"),  # multicast
    ("https://user:pw@hooks.example.org/x", "credentials"),
    ("https://hooks.example.org:99999/x", "not a valid URL"),
    ("https://hooks.example.org:0/x", "1-65535"),
    ("https://[::1/x", "not a valid URL"),
    ("https://hooks.example.org/x y", "spaces"),
    ("https:///nohost", "no host"),
    ("https://hooks.example.org/" + "a" * 3000, "2048"),
]


@pytest.mark.parametrize("url, reason", REFUSED_LITERALS)
def test_the_guard_refuses_each_unsafe_form(url, reason):
    with pytest.raises(UnsafeUrl, match=reason):
        vet(url, allow_loopback=False, resolve=resolver("8.8.8.8"))


@pytest.mark.parametrize("url, reason", [row for row in REFUSED_LITERALS if row[0].startswith("https://[")
                                         or "credentials" in row[1] or "valid URL" in row[1]])
def test_registration_refuses_the_same_forms_without_resolving(url, reason):
    assert url_problem(url, allow_loopback=False)


@pytest.mark.parametrize("answer", ["127.0.0.1", "10.0.0.7", "::ffff:169.254.169.254", "64:ff9b::7f00:1", "fd12::1"])
def test_a_name_resolving_to_any_non_public_address_is_refused(answer):
    with pytest.raises(UnsafeUrl, match="non-public"):
        vet("https://hooks.example.org/x", allow_loopback=False, resolve=resolver("8.8.8.8", answer))


def test_the_vetted_address_is_the_one_resolved_once_and_the_name_is_kept():
    resolve = resolver("8.8.4.4")
    target = vet("https://hooks.example.org:8443/a/b?c=1", allow_loopback=False, resolve=resolve)
    assert (target.address, target.port, target.host, target.path) == ("8.8.4.4", 8443, "hooks.example.org",
                                                                        "/a/b?c=1")
    assert target.host_header == "hooks.example.org:8443"
    assert resolve.calls == ["hooks.example.org"]


def test_loopback_is_allowed_only_with_the_local_flag():
    assert vet("http://127.0.0.1:8080/hook", allow_loopback=True).address == "127.0.0.1"
    with pytest.raises(UnsafeUrl):
        vet("http://127.0.0.1:8080/hook", allow_loopback=False)
    with pytest.raises(UnsafeUrl):
        vet("http://10.0.0.1/hook", allow_loopback=True)
    with pytest.raises(UnsafeUrl):  # loopback wrapped in an IPv6 form is not plain loopback
        vet("http://[::ffff:127.0.0.1]/hook", allow_loopback=True)
    assert url_problem("https://8.8.8.8/hook", allow_loopback=False) is None


def test_signature_matches_the_standard_webhooks_example():
    # The example from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
