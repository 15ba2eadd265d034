"""Target URL safety policy: refuse webhook targets that point into private networks (SSRF)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections import deque
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

__all__ = [
    "PolicyResolver",
    "TargetPolicy",
    "TargetRefused",
    "address_refusal",
    "check_target",
    "check_url_syntax",
    "host_key",
    "parse_host_ip",
    "refusal_of",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
_MAX_HOST_LENGTH = 253
_MAX_LABEL_LENGTH = 63

# yarl has already lowercased and IDNA-encoded the host, so anything outside this set (spaces,
# percent signs, ...) is something a resolver might interpret in surprising ways.
_HOST_NAME_RE = re.compile(r"[a-z0-9_.-]+")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_OCT_DIGITS = frozenset("01234567")
_DEC_DIGITS = frozenset("0123456789")

# Mirrors aiohttp's ThreadedResolver so results behave identically apart from the policy check.
_NUMERIC_SOCKET_FLAGS = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_NAME_SOCKET_FLAGS = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
_AI_ADDRCONFIG = socket.AI_ADDRCONFIG
if hasattr(socket, "AI_MASK"):
    _AI_ADDRCONFIG &= socket.AI_MASK


class TargetRefused(OSError):
    """A target URL or address that the policy refuses.

    str(exc) is a short human reason, safe to show to API users.  It is an OSError so that a
    resolver raising it travels through aiohttp's connector like any other lookup failure.
    """

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        # aiohttp's ClientConnectorError renders its message from strerror.
        self.strerror = reason

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Which otherwise-refused targets are allowed (both off in production)."""

    allow_http: bool = False
    allow_private: bool = False


def _v4(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)


def _v6(cidr: str) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network(cidr)


# First match wins, so more specific entries come before the blocks that contain them.
_V4_RULES: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_v4("0.0.0.0/32"), "unspecified"),
    (_v4("0.0.0.0/8"), "this-network (0.0.0.0/8)"),
    (_v4("10.0.0.0/8"), "private"),
    (_v4("100.64.0.0/10"), "shared address space (CGNAT)"),
    (_v4("127.0.0.0/8"), "loopback"),
    (_v4("169.254.169.254/32"), "link-local (cloud metadata)"),
    (_v4("169.254.0.0/16"), "link-local"),
    (_v4("172.16.0.0/12"), "private"),
    (_v4("192.0.0.0/24"), "reserved (IETF protocol assignments)"),
    (_v4("192.0.2.0/24"), "documentation"),
    (_v4("192.88.99.0/24"), "reserved (6to4 relay anycast)"),
    (_v4("192.168.0.0/16"), "private"),
    (_v4("198.18.0.0/15"), "benchmarking"),
    (_v4("198.51.100.0/24"), "documentation"),
    (_v4("203.0.113.0/24"), "documentation"),
    (_v4("224.0.0.0/4"), "multicast"),
    (_v4("255.255.255.255/32"), "broadcast"),
    (_v4("240.0.0.0/4"), "reserved"),
    # Publicly numbered, but inside Azure it is the platform's host endpoint: a classic SSRF prize.
    (_v4("168.63.129.16/32"), "cloud metadata (Azure wireserver)"),
)

_V6_RULES: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_v6("64:ff9b:1::/48"), "reserved (local-use NAT64)"),
    (_v6("100::/64"), "reserved (discard-only)"),
    (_v6("2001::/32"), "reserved (Teredo)"),
    (_v6("2001:2::/48"), "benchmarking"),
    (_v6("2001:10::/28"), "reserved (ORCHID)"),
    (_v6("2001:20::/28"), "reserved (ORCHIDv2)"),
    (_v6("2001:db8::/32"), "documentation"),
    (_v6("3fff::/20"), "documentation"),
    (_v6("5f00::/16"), "reserved (SRv6 SIDs)"),
    (_v6("fd00:ec2::254/128"), "unique-local (cloud metadata)"),
    (_v6("fc00::/7"), "unique-local"),
    (_v6("fe80::/10"), "link-local"),
    (_v6("fec0::/10"), "site-local"),
    (_v6("ff00::/8"), "multicast"),
)

# Blocks whose low 32 bits are an IPv4 address the packet ends up at.
_V6_EMBEDDING_V4_LOW32: tuple[ipaddress.IPv6Network, ...] = (
    _v6("::ffff:0:0/96"),  # IPv4-mapped
    _v6("::/96"),  # IPv4-compatible (deprecated, but some stacks still route it)
    _v6("::ffff:0:0:0/96"),  # IPv4-translated (SIIT)
    _v6("64:ff9b::/96"),  # NAT64 well-known prefix
)
_V6_GLOBAL_UNICAST = _v6("2000::/3")


def address_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Return None if ip is publicly routable, else a short reason such as "loopback"."""
    if isinstance(ip, ipaddress.IPv4Address):
        for net, reason in _V4_RULES:
            if ip in net:
                return reason
        return None if ip.is_global else "reserved"

    # Scope ids do not change where an address points, and networks never carry one.
    bare = ipaddress.IPv6Address(int(ip))
    if bare == ipaddress.IPv6Address(0):
        return "unspecified"
    if bare == ipaddress.IPv6Address(1):
        return "loopback"
    for prefix in _V6_EMBEDDING_V4_LOW32:
        if bare in prefix:
            return address_refusal(ipaddress.IPv4Address(int(bare) & 0xFFFFFFFF))
    sixtofour = bare.sixtofour
    if sixtofour is not None:
        return address_refusal(sixtofour)
    for net6, reason in _V6_RULES:
        if bare in net6:
            return reason
    if bare not in _V6_GLOBAL_UNICAST or not bare.is_global:
        return "reserved"
    return None


def _parse_ipv4_number(part: str) -> int | None:
    # Explicit digit sets: int() would also accept "+1", " 1", "1_0" and non-ASCII digits.
    if not part:
        return None
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if not digits:
            return 0  # WHATWG reads a bare "0x" as zero
        return int(digits, 16) if set(digits) <= _HEX_DIGITS else None
    if len(part) > 1 and part[0] == "0":
        return int(part[1:], 8) if set(part[1:]) <= _OCT_DIGITS else None
    return int(part) if set(part) <= _DEC_DIGITS else None


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    # inet_aton()/WHATWG semantics: 1-4 parts, each decimal, 0x-hex or 0-octal, with the last
    # part filling all remaining bytes ("127.1" == "127.0.0.1", "2130706433" == "127.0.0.1").
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _parse_ipv4_number(part)
        if number is None:
            return None
        numbers.append(number)
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_host_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Return the address a numeric host spells, in any spelling a resolver accepts, else None."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            return None
    if ":" in host:
        # RFC 6874 percent-encodes the zone separator inside URLs.
        host = host.replace("%25", "%", 1)
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    return _parse_ipv4(host)


def _ends_in_number(host: str) -> bool:
    # WHATWG: such a host is parsed as IPv4 or rejected, never looked up as a name.
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    last = parts[-1]
    if last and set(last) <= _DEC_DIGITS:
        return True
    return _parse_ipv4_number(last) is not None


# Appended to a refusal: the setting that would allow the target, so nobody has to search.
PRIVATE_HINT = "; security.allow_private_targets = true allows it (for local testing only)"
HTTP_HINT = "; security.allow_http_targets = true allows http"


def _refused(address: IPAddress, policy: TargetPolicy) -> str | None:
    return None if policy.allow_private else address_refusal(address)


def check_url_syntax(url: str, policy: TargetPolicy) -> URL:
    """Check a target URL without any DNS lookup; raise TargetRefused, else return it parsed."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"URL is longer than {MAX_URL_LENGTH} characters")
    # yarl silently drops tabs and newlines; refusing keeps the stored URL equal to what is sent.
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise TargetRefused("URL contains whitespace or control characters")
    # Checked on the text because yarl cannot tell an empty fragment from none.
    if "#" in url:
        raise TargetRefused("URL must not have a fragment")
    try:
        parsed = URL(url)
    except ValueError as exc:
        if "port" in str(exc).lower():
            raise TargetRefused("port out of range (1-65535)") from exc
        raise TargetRefused("URL is not valid") from exc

    scheme = parsed.scheme
    if not scheme:
        raise TargetRefused("URL is not absolute")
    allowed = ("http", "https") if policy.allow_http else ("https",)
    if scheme not in allowed:
        if policy.allow_http:
            raise TargetRefused(f"scheme {scheme} is not allowed (http and https only)")
        hint = HTTP_HINT if scheme == "http" else ""
        raise TargetRefused(f"scheme {scheme} is not allowed (https only{hint})")
    host = parsed.raw_host
    if not host:
        raise TargetRefused("URL has no host")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise TargetRefused("URL must not contain credentials (user:pass@)")
    if parsed.explicit_port == 0:
        raise TargetRefused("port out of range (1-65535)")

    address = parse_host_ip(host)
    if address is None:
        if ":" in host:
            raise TargetRefused(f"host is not a valid IPv6 address: {host}")
        if not _HOST_NAME_RE.fullmatch(host):
            raise TargetRefused("host contains characters not allowed in a host name")
        if _ends_in_number(host):
            raise TargetRefused(f"host is not a valid IPv4 address: {host}")
        if len(host.rstrip(".")) > _MAX_HOST_LENGTH or any(
            len(label) > _MAX_LABEL_LENGTH for label in host.split(".")
        ):
            raise TargetRefused("host name is too long")
        return parsed

    reason = _refused(address, policy)
    if reason is not None:
        written = "" if host == str(address) else f" (written {host})"
        raise TargetRefused(f"address {address}{written} is {reason}{PRIVATE_HINT}")
    if isinstance(address, ipaddress.IPv4Address) and host != str(address):
        # aiohttp refuses legacy IPv4 spellings at connect time (InvalidUrlClientError), so a hook
        # stored with one would never deliver; say so while the user is still looking.
        raise TargetRefused(f"write the address as {address} instead of {host}")
    return parsed


def _judge_resolved(host: str, address: str, policy: TargetPolicy) -> None:
    if policy.allow_private:
        return
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as exc:
        # Only an odd resolver would do this; an address we cannot judge is not allowed through.
        raise TargetRefused(f"host {host} resolved to an unparseable address") from exc
    reason = address_refusal(ip)
    if reason is not None:
        raise TargetRefused(f"address {ip} (from {host}) is {reason}{PRIVATE_HINT}")


async def check_target(url: str, policy: TargetPolicy) -> list[str]:
    """Check url's syntax and every address its host resolves to; return those addresses."""
    parsed = check_url_syntax(url, policy)
    host = parsed.raw_host
    assert host is not None  # check_url_syntax refuses host-less URLs
    literal = parse_host_ip(host)
    if literal is not None:
        return [str(literal)]
    shown = parsed.host or host
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, parsed.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"host does not resolve: {shown}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TargetRefused(f"host does not resolve: {shown}")
    for address in addresses:
        _judge_resolved(shown, address, policy)
    return addresses


class PolicyResolver(AbstractResolver):
    """aiohttp resolver that checks every resolved address against the policy.

    A connection therefore only ever goes to an address checked in the same lookup, leaving no
    window for DNS rebinding between check and connect.  aiohttp's TCPConnector never consults
    the resolver for canonical IP literals ("127.0.0.1", "[::1]"), so URLs must also pass
    check_url_syntax (and redirects must not be followed blindly).
    """

    def __init__(self, policy: TargetPolicy) -> None:
        self._policy = policy

    @property
    def policy(self) -> TargetPolicy:
        return self._policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        literal = parse_host_ip(host)
        if literal is not None:
            # Hex and similar spellings do reach the resolver, and getaddrinfo would honour them.
            reason = _refused(literal, self._policy)
            if reason is not None:
                raise TargetRefused(f"address {literal} (written {host}) is {reason}")
            host_to_resolve = str(literal)
        else:
            host_to_resolve = host

        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host_to_resolve, port, type=socket.SOCK_STREAM, family=family, flags=_AI_ADDRCONFIG
        )
        results: list[ResolveResult] = []
        for info_family, _, proto, _, sockaddr in infos:
            if info_family == socket.AF_INET6:
                if len(sockaddr) < 3:
                    continue  # Python built without IPv6 support
                if sockaddr[3]:
                    # A scope id must survive into the address string for link-local targets.
                    resolved, resolved_port = await loop.getnameinfo(sockaddr, _NAME_SOCKET_FLAGS)
                    resolved_port_int = int(resolved_port)
                else:
                    resolved, resolved_port_int = str(sockaddr[0]), int(sockaddr[1])
            elif info_family == socket.AF_INET:
                resolved, resolved_port_int = str(sockaddr[0]), int(sockaddr[1])
            else:
                continue
            # Refuse the whole lookup on any bad address: happy eyeballs may try any of them.
            _judge_resolved(host, resolved, self._policy)
            results.append(
                ResolveResult(
                    hostname=host,
                    host=resolved,
                    port=resolved_port_int,
                    family=info_family,
                    proto=proto,
                    flags=_NUMERIC_SOCKET_FLAGS,
                )
            )
        return results

    async def close(self) -> None:
        return None


def refusal_of(exc: BaseException) -> TargetRefused | None:
    """Return the TargetRefused behind exc (through causes and aiohttp wrappers), if any."""
    pending: deque[BaseException] = deque([exc])
    seen: set[int] = set()
    while pending:
        current = pending.popleft()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, TargetRefused):
            return current
        # ClientConnectorDNSError (a ClientConnectorError) keeps the resolver's error here.
        if isinstance(current, aiohttp.ClientConnectorError):
            pending.append(current.os_error)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return None


def host_key(url: str | URL) -> str:
    """Return the key that groups callbacks per host: lowercased IDNA host name, port ignored."""
    parsed = url if isinstance(url, URL) else URL(url)
    host = parsed.raw_host
    if not host:
        raise ValueError("URL has no host")
    address = parse_host_ip(host)
    if address is not None:
        return str(address)
    # yarl has lowercased and IDNA-encoded raw_host; a trailing dot names the same host.
    return host.rstrip(".").lower() or host
