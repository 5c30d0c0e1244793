"""The webhook SSRF guard (pure but for one DNS lookup): which URLs and addresses a webhook may reach.

Rules, applied at registration (the URL's form and any literal address) and again at every send
(after resolving the name once; the connection then goes to the vetted address, so a second lookup
that answers differently, DNS rebinding, is never made):

- https only; plain http only to loopback, and loopback only where `allow_loopback` is set (local
  stack and tests);
- no credentials in the URL; a port, if given, within 1-65535;
- every address the name resolves to must be public: not private, loopback, link-local, unique-local,
  multicast, reserved or unspecified, and not one of the IPv6 forms that embed an IPv4 address
  (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) around a non-public one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from shared.events import MAX_URL_LENGTH

# The well-known NAT64 prefix (RFC 6052) and the local-use one (RFC 8215): the last 32 bits are IPv4.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list]


class UnsafeUrl(ValueError):
    """A webhook URL the guard refuses; the message says why."""


@dataclass(frozen=True)
class VettedTarget:
    """Where a send connects: the vetted address, with the name kept for Host and TLS (SNI, certificate)."""

    scheme: str
    host: str
    address: str
    port: int
    path: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def embedded_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]  # the client; the server is checked by being public anyway
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d, deprecated IPv4-compatible
        return ipaddress.IPv4Address(int(address))
    return None


def is_public(address: IpAddress) -> bool:
    """Globally routable, and so is any IPv4 address embedded in it."""
    if not address.is_global or address.is_multicast:
        return False
    inner = embedded_ipv4(address)
    return inner is None or (inner.is_global and not inner.is_multicast)


def _literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_loopback(address: IpAddress) -> bool:
    inner = embedded_ipv4(address)
    return address.is_loopback and inner is None


def _parts(url: str) -> tuple[SplitResult, int]:
    """The URL's parts and port, or UnsafeUrl for anything that is not a plain absolute URL."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"must be a URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port outside 0-65535, a broken IPv6 literal
        raise UnsafeUrl(f"is not a valid URL: {exc}") from exc
    if parts.scheme not in ("https", "http"):
        raise UnsafeUrl("must be an https URL")
    if not parts.hostname:
        raise UnsafeUrl("has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("must not carry credentials")
    if port == 0:
        raise UnsafeUrl("port must be within 1-65535")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise UnsafeUrl("must not contain spaces or control characters")
    return parts, port or (443 if parts.scheme == "https" else 80)


def _address_problem(address: IpAddress, scheme: str, allow_loopback: bool) -> str | None:
    if allow_loopback and _is_loopback(address):
        return None
    if scheme != "https":
        return "must use https (plain http only to loopback on the local stack)"
    return None if is_public(address) else f"reaches a non-public address ({address})"


def url_problem(url: str, *, allow_loopback: bool) -> str | None:
    """Why the URL's form or its literal address is refused, or None. Names are not resolved here."""
    try:
        parts, _port = _parts(url)
    except UnsafeUrl as exc:
        return str(exc)
    literal = _literal(parts.hostname or "")
    if literal is not None:
        return _address_problem(literal, parts.scheme, allow_loopback)
    if parts.scheme != "https" and not (allow_loopback and parts.hostname == "localhost"):
        return "must use https (plain http only to loopback on the local stack)"
    return None


def vet(url: str, *, allow_loopback: bool, resolve: Resolver = socket.getaddrinfo) -> VettedTarget:
    """Resolve the URL's host once and return the address to connect to; UnsafeUrl if any answer is refused."""
    parts, port = _parts(url)
    host = parts.hostname or ""
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            answers = resolve(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise UnsafeUrl(f"{host} does not resolve: {exc}") from exc
        addresses = [ipaddress.ip_address(str(answer[4][0]).split("%")[0]) for answer in answers]
        if not addresses:
            raise UnsafeUrl(f"{host} does not resolve")
    for address in addresses:
        problem = _address_problem(address, parts.scheme, allow_loopback)
        if problem:
            raise UnsafeUrl(f"{host} {problem}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return VettedTarget(parts.scheme, host, str(addresses[0]), port, path)
