"""Where webhooks may point: the server-side request forgery rules.

A URL is refused unless it is http(s) (https only in production), has no credentials, uses an
allowed port, and its host - a name after DNS resolution, or a literal address - is a public
address. Private, loopback, link-local (cloud metadata), shared, multicast and reserved ranges
are refused, in any spelling (``0x7f000001``, ``2130706433``, ``017700000001``,
``[::ffff:127.0.0.1]``, 6to4/Teredo/NAT64 wrappers ...), unless an operator allow-lists them
(``INFERX_WEBHOOK_ALLOW_PRIVATE``, CIDRs). The check runs at creation and again at every
delivery, and the delivery connects to the very address that was checked (no second lookup).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from inferx.config import Settings
from inferx.errors import InvalidInput

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL = 2048
RESOLVE_TIMEOUT_S = 5.0
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")
_BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".intranet", ".lan")
_BLOCKED_NAMES = frozenset({"localhost", "metadata", "metadata.google.internal", "instance-data"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeUrl(InvalidInput):
    title = "Webhook URL not allowed"


@dataclass(frozen=True, slots=True)
class Policy:
    allow: tuple[Network, ...]
    ports: frozenset[int]  # empty: any port
    https_only: bool

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        https_only = settings.webhook_require_https
        if https_only is None:
            https_only = settings.env == "production"
        return cls(
            allow=tuple(ipaddress.ip_network(c) for c in settings.webhook_allow_private),
            ports=frozenset(settings.webhook_allowed_ports),
            https_only=https_only,
        )


@dataclass(frozen=True, slots=True)
class Destination:
    url: str
    scheme: str
    host: str  # as written (a name, or an address)
    port: int
    ip: str  # the checked address to connect to


def _unwrap(ip: IP) -> IP:
    """The IPv4 address hiding in an IPv6 one (mapped, 6to4, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def is_public(ip: IP) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.teredo is not None:
        return all(is_public(part) for part in ip.teredo)
    inner = _unwrap(ip)
    if inner is not ip:
        return is_public(inner)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def allowed(ip: IP, policy: Policy) -> bool:
    inner = _unwrap(ip)
    if any(inner in net or ip in net for net in policy.allow):
        return True
    return is_public(ip)


def literal(host: str) -> IP | None:
    """The address a host names without DNS; odd IPv4 spellings are refused outright."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            packed = socket.inet_aton(host)
        except OSError:
            return None
        canonical = ipaddress.IPv4Address(packed)
        raise UnsafeUrl(f"Write IP addresses in dotted decimal ({canonical}), not {host!r}.")
    return None


def parse(url: str, policy: Policy) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL that passes the rules that need no DNS."""
    if len(url) > MAX_URL:
        raise UnsafeUrl(f"The URL is longer than {MAX_URL} characters.")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise UnsafeUrl("The URL contains whitespace or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("The URL cannot be parsed.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeUrl("Webhook URLs must be http:// or https://.")
    if policy.https_only and scheme != "https":
        raise UnsafeUrl("Webhook URLs must use https:// on this server.")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise UnsafeUrl("Webhook URLs may not carry credentials.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeUrl("The URL has no host.")
    if port is None:
        port = 443 if scheme == "https" else 80
    return scheme, host, port


def _check_name(host: str) -> None:
    if host in _BLOCKED_NAMES or host.endswith(_BLOCKED_SUFFIXES):
        raise UnsafeUrl(f"{host!r} names a local or internal host.")
    if "." not in host:
        raise UnsafeUrl(f"{host!r} is not a fully qualified domain name.")


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check(url: str, policy: Policy, resolver: Resolver) -> Destination:
    """The destination to connect to, or ``UnsafeUrl``. Every resolved address must pass, so
    a name with one public and one private address is refused."""
    scheme, host, port = parse(url, policy)
    ip = literal(host)
    if ip is not None:
        addresses: list[IP] = [ip]
    else:
        _check_name(host)
        try:
            found = await resolver(host, port)
        except (OSError, TimeoutError, UnicodeError):
            raise UnsafeUrl(f"{host!r} cannot be resolved.") from None
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in found]
        except ValueError:
            raise UnsafeUrl(f"{host!r} resolved to something that is not an address.") from None
        if not addresses:
            raise UnsafeUrl(f"{host!r} cannot be resolved.")
    for address in addresses:
        if not allowed(address, policy):
            raise UnsafeUrl(
                f"{host!r} is a private, loopback, link-local or reserved address"
                if ip is not None
                else f"{host!r} resolves to a private, loopback, link-local or reserved address."
            )
    trusted = all(any(_unwrap(a) in n or a in n for n in policy.allow) for a in addresses)
    if policy.ports and port not in policy.ports and not trusted:
        allowed_ports = ", ".join(str(p) for p in sorted(policy.ports))
        raise UnsafeUrl(f"Port {port} is not allowed for webhooks (allowed: {allowed_ports}).")
    return Destination(url=url, scheme=scheme, host=host, port=port, ip=str(addresses[0]))
