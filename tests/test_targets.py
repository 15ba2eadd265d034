"""Tests for gateway.targets: the target URL safety policy (no traffic leaves loopback)."""

from __future__ import annotations

import ipaddress
import pickle
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from yarl import URL

from gateway.targets import (
    PolicyResolver,
    TargetPolicy,
    TargetRefused,
    address_refusal,
    check_target,
    check_url_syntax,
    host_key,
    parse_host_ip,
    refusal_of,
)

STRICT = TargetPolicy()
HTTP_OK = TargetPolicy(allow_http=True)
PRIVATE_OK = TargetPolicy(allow_http=True, allow_private=True)

# (address, a word the reason must contain)
REFUSED_ADDRESSES = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.0.1", "link-local"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.255", "CGNAT"),
    ("224.0.0.1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this-network"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.2.1", "documentation"),
    ("192.0.0.192", "reserved"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fc00::1", "unique-local"),
    ("fd12::1", "unique-local"),
    ("fd00:ec2::254", "cloud metadata"),
    ("ff02::1", "multicast"),
    ("fec0::1", "site-local"),
    ("2001:db8::1", "documentation"),
    ("100::1", "reserved"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::127.0.0.1", "loopback"),
    ("::ffff:0:10.0.0.1", "private"),
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),
    ("2002:7f00:1::", "loopback"),
    ("2002:c0a8:101::1", "private"),
]

PUBLIC_ADDRESSES = ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "93.184.216.34"]

# (host as written in a URL, the address it denotes)
NUMERIC_SPELLINGS = [
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0X7F000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ("[::ffff:7f00:1]", "::ffff:7f00:1"),
    ("[::1]", "::1"),
    ("4294967295", "255.255.255.255"),
]


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize(("address", "word"), REFUSED_ADDRESSES)
def test_address_refusal_refuses(address: str, word: str) -> None:
    reason = address_refusal(ipaddress.ip_address(address))
    assert reason is not None
    assert word in reason


@pytest.mark.parametrize(("address", "word"), REFUSED_ADDRESSES)
def test_check_url_syntax_refuses_address(address: str, word: str) -> None:
    with pytest.raises(TargetRefused) as info:
        check_url_syntax(f"https://{_url_host(address)}/hook", STRICT)
    assert str(info.value).startswith("address ")
    assert word in str(info.value)
    assert info.value.reason == str(info.value)


@pytest.mark.parametrize(("address", "word"), REFUSED_ADDRESSES)
def test_allow_private_lets_refused_address_through(address: str, word: str) -> None:
    parsed = check_url_syntax(f"https://{_url_host(address)}/hook", PRIVATE_OK)
    assert parse_host_ip(parsed.raw_host or "") == ipaddress.ip_address(address)


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_address_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None
    parsed = check_url_syntax(f"https://{_url_host(address)}:8443/hook?x=1", STRICT)
    assert parsed.port == 8443


def test_embedded_public_ipv4_is_judged_as_public() -> None:
    for address in ("::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"):
        assert address_refusal(ipaddress.ip_address(address)) is None


def test_scoped_ipv6_is_judged_without_scope() -> None:
    assert address_refusal(ipaddress.IPv6Address("fe80::1%eth0")) == "link-local"


@pytest.mark.parametrize(("host", "address"), NUMERIC_SPELLINGS)
def test_parse_host_ip_numeric_spellings(host: str, address: str) -> None:
    assert parse_host_ip(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize(("host", "address"), NUMERIC_SPELLINGS)
def test_numeric_spelling_of_refused_address_is_refused(host: str, address: str) -> None:
    with pytest.raises(TargetRefused) as info:
        check_url_syntax(f"http://{host}/", HTTP_OK)
    assert f"address {ipaddress.ip_address(address)}" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://0x7f.1/",
        "http://[::ffff:7f00:1]/",
        "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",  # fullwidth digits: IDNA maps to ASCII
        "http://127\u30020\u30020\u30021/",  # ideographic full stops: IDNA maps to dots
    ],
)
def test_brief_numeric_urls_refused(url: str) -> None:
    with pytest.raises(TargetRefused, match="loopback"):
        check_url_syntax(url, HTTP_OK)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("[fe80::1%25eth0]", "fe80::1%eth0"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ],
)
def test_parse_host_ip_ipv6_forms(host: str, address: str) -> None:
    assert parse_host_ip(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "localhost",
        "a1",
        "1.example",
        "1.2.3.4.5",
        "256.1.1.1",
        "4294967296",
        "0x7g",
        "08.0.0.1",
        "1_0.0.0.1",
        "+1.0.0.1",
        " 1.0.0.1",
        "\u0661\u0662\u0667.0.0.1",  # Arabic-Indic digits, which int() accepts
        "127..1",
        "",
        "[127.0.0.1]",
        "1::2::3",
    ],
)
def test_parse_host_ip_non_numeric(host: str) -> None:
    assert parse_host_ip(host) is None


def test_public_address_in_legacy_spelling_is_refused_with_canonical_hint() -> None:
    with pytest.raises(TargetRefused, match=r"write the address as 8\.8\.8\.8"):
        check_url_syntax("https://134744072/", STRICT)


def test_allow_private_still_refuses_legacy_spelling() -> None:
    # aiohttp would refuse it at connect time anyway, so a stored hook could never deliver.
    with pytest.raises(TargetRefused, match=r"127\.0\.0\.1"):
        check_url_syntax("http://127.1:8080/", PRIVATE_OK)


def test_allow_private_lets_loopback_through() -> None:
    assert check_url_syntax("http://127.0.0.1:8080/x", PRIVATE_OK).port == 8080
    assert check_url_syntax("https://[::1]/x", PRIVATE_OK).raw_host == "::1"
    with pytest.raises(TargetRefused, match="loopback"):
        check_url_syntax("https://127.0.0.1/x", HTTP_OK)


def test_https_allowed_and_returns_parsed_url() -> None:
    parsed = check_url_syntax("https://hooks.example.com/in?a=1", STRICT)
    assert isinstance(parsed, URL)
    assert parsed.host == "hooks.example.com"
    assert parsed.query_string == "a=1"


def test_http_refused_unless_allowed() -> None:
    with pytest.raises(TargetRefused, match=r"^scheme http is not allowed \(https only; "
                       r"security\.allow_http_targets = true allows http\)$"):
        check_url_syntax("http://hooks.example.com/", STRICT)
    assert check_url_syntax("http://hooks.example.com/", HTTP_OK).scheme == "http"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://files.example.com/x",
        "file:///etc/passwd",
        "file://localhost/etc/passwd",
        "javascript:alert(1)",
        "gopher://example.com/",
        "ws://example.com/",
        "data:text/plain,hi",
    ],
)
@pytest.mark.parametrize("policy", [STRICT, HTTP_OK, PRIVATE_OK])
def test_other_schemes_always_refused(url: str, policy: TargetPolicy) -> None:
    with pytest.raises(TargetRefused, match="scheme"):
        check_url_syntax(url, policy)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("https://user:pass@hooks.example.com/", "credentials"),
        ("https://user@hooks.example.com/", "credentials"),
        ("https://:pass@hooks.example.com/", "credentials"),
        ("/relative/path", "not absolute"),
        ("hooks.example.com/path", "not absolute"),
        ("//hooks.example.com/path", "not absolute"),
        ("", "not absolute"),
        ("https:///path", "no host"),
        ("https://hooks.example.com/#frag", "fragment"),
        ("https://hooks.example.com/#", "fragment"),
        ("https://hooks.example.com:0/", "port"),
        ("https://hooks.example.com:70000/", "port"),
        ("https://hooks.example.com/" + "a" * 2048, "longer than 2048"),
        ("https://hooks.example.com/ x", "whitespace"),
        ("https://hooks.exa\tmple.com/", "whitespace"),
        (" https://hooks.example.com/", "whitespace"),
        ("https://[1::2::3]/", "not a valid IPv6"),
        ("https://999.1.1.1/", "not a valid IPv4"),
        ("https://example.0x1/", "not a valid IPv4"),
        ("https://%31%32%37.0.0.1/", "characters"),
        ("https://" + "a" * 64 + ".example/", "too long"),
    ],
)
def test_syntax_refusals(url: str, fragment: str) -> None:
    with pytest.raises(TargetRefused) as info:
        check_url_syntax(url, PRIVATE_OK)
    assert fragment in str(info.value)


def test_url_at_length_limit_is_allowed() -> None:
    base = "https://hooks.example.com/"
    url = base + "a" * (2048 - len(base))
    assert len(url) == 2048
    check_url_syntax(url, STRICT)


def test_target_refused_is_an_oserror_with_reason() -> None:
    exc = TargetRefused("address 127.0.0.1 is loopback")
    assert isinstance(exc, OSError)
    assert str(exc) == exc.reason == "address 127.0.0.1 is loopback"
    assert exc.strerror == exc.reason
    clone = pickle.loads(pickle.dumps(exc))
    assert isinstance(clone, TargetRefused)
    assert clone.reason == exc.reason


@pytest.mark.asyncio
async def test_check_target_localhost_refused_by_default() -> None:
    with pytest.raises(TargetRefused, match="loopback") as info:
        await check_target("https://localhost/hook", STRICT)
    assert "localhost" in str(info.value)


@pytest.mark.asyncio
async def test_check_target_localhost_allowed_with_allow_private() -> None:
    addresses = await check_target("https://localhost:8443/hook", PRIVATE_OK)
    assert addresses
    assert set(addresses) <= {"127.0.0.1", "::1"}


@pytest.mark.asyncio
async def test_check_target_unresolvable_name() -> None:
    with pytest.raises(TargetRefused, match=r"^host does not resolve: nohost\.invalid$"):
        await check_target("https://nohost.invalid/hook", PRIVATE_OK)


@pytest.mark.asyncio
async def test_check_target_literal_needs_no_lookup() -> None:
    assert await check_target("https://8.8.8.8/hook", STRICT) == ["8.8.8.8"]
    assert await check_target("https://[2606:4700::1111]/hook", STRICT) == ["2606:4700::1111"]
    with pytest.raises(TargetRefused, match="loopback"):
        await check_target("https://0x7f000001/hook", STRICT)


@pytest.mark.asyncio
async def test_check_target_checks_syntax_first() -> None:
    with pytest.raises(TargetRefused, match="scheme http"):
        await check_target("http://localhost/", TargetPolicy(allow_private=True))


@pytest.mark.asyncio
async def test_policy_resolver_resolve_directly() -> None:
    with pytest.raises(TargetRefused, match="loopback"):
        await PolicyResolver(STRICT).resolve("localhost", 443, family=socket.AF_INET)
    with pytest.raises(TargetRefused, match="loopback"):
        await PolicyResolver(STRICT).resolve("0x7f000001", 443, family=socket.AF_INET)
    resolver = PolicyResolver(PRIVATE_OK)
    results = await resolver.resolve("localhost", 443, family=socket.AF_INET)
    await resolver.close()
    assert [(r["hostname"], r["host"], r["port"]) for r in results] == [
        ("localhost", "127.0.0.1", 443)
    ]
    assert all(r["family"] == socket.AF_INET for r in results)


@pytest.mark.asyncio
async def test_policy_resolver_unresolvable_name_is_not_a_refusal() -> None:
    with pytest.raises(OSError) as info:
        await PolicyResolver(STRICT).resolve("nohost.invalid", 443)
    assert refusal_of(info.value) is None


@dataclass
class Server:
    port: int
    hits: list[str] = field(default_factory=list)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(port=0)

    async def handle(request: web.Request) -> web.Response:
        state.hits.append(await request.text())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        await runner.cleanup()


def _session(policy: TargetPolicy) -> aiohttp.ClientSession:
    # AF_INET: the test server listens on 127.0.0.1 only, whatever localhost maps to here.
    connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy), family=socket.AF_INET)
    return aiohttp.ClientSession(connector=connector)


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["localhost", "0x7f000001", "0x7f.1"])
async def test_policy_resolver_blocks_connection(server: Server, host: str) -> None:
    async with _session(HTTP_OK) as session:
        with pytest.raises(aiohttp.ClientError) as info:
            await session.post(f"http://{host}:{server.port}/", data=b"payload")
    # What session.post really raises for a resolver's OSError.
    assert isinstance(info.value, aiohttp.ClientConnectorDNSError)
    refusal = refusal_of(info.value)
    assert isinstance(refusal, TargetRefused)
    assert "loopback" in refusal.reason
    assert "loopback" in str(info.value)
    assert server.hits == []


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["localhost", "0x7f000001"])
async def test_policy_resolver_allows_private_when_configured(server: Server, host: str) -> None:
    async with (
        _session(PRIVATE_OK) as session,
        session.post(f"http://{host}:{server.port}/", data=b"payload") as response,
    ):
        assert response.status == 200
    assert server.hits == ["payload"]


@pytest.mark.asyncio
async def test_aiohttp_skips_resolver_for_canonical_ip_literal(server: Server) -> None:
    # Pins the aiohttp behaviour that makes check_url_syntax mandatory before delivery.
    async with (
        _session(HTTP_OK) as session,
        session.post(f"http://127.0.0.1:{server.port}/", data=b"literal") as response,
    ):
        assert response.status == 200
    assert server.hits == ["literal"]


@pytest.mark.asyncio
async def test_aiohttp_rejects_decimal_ipv4_before_resolver(server: Server) -> None:
    async with _session(PRIVATE_OK) as session:
        with pytest.raises(aiohttp.InvalidURL) as info:
            await session.post(f"http://2130706433:{server.port}/", data=b"x")
    assert refusal_of(info.value) is None
    assert server.hits == []


def test_refusal_of_walks_causes_and_contexts() -> None:
    refused = TargetRefused("address 10.0.0.1 is private")
    assert refusal_of(refused) is refused

    try:
        try:
            raise refused
        except TargetRefused as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert refusal_of(outer) is refused

    try:
        try:
            raise refused
        except TargetRefused:
            raise ValueError("during handling")  # noqa: B904 - implicit __context__ is the point
    except ValueError as outer:
        assert refusal_of(outer) is refused

    group = ExceptionGroup("attempts", [ConnectionRefusedError(), refused])
    assert refusal_of(group) is refused


def test_refusal_of_none_for_other_errors_and_cycles() -> None:
    assert refusal_of(ConnectionRefusedError()) is None
    first, second = ValueError("a"), ValueError("b")
    first.__context__ = second
    second.__context__ = first
    assert refusal_of(first) is None


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://a.example:1", "a.example"),
        ("https://A.example:2/path", "a.example"),
        ("https://a.example./x", "a.example"),
        ("https://BÜCHER.de/x", "xn--bcher-kva.de"),
        ("https://xn--bcher-kva.de/", "xn--bcher-kva.de"),
        ("https://[::1]:8443/", "::1"),
        ("https://[2606:4700:0::1111]/", "2606:4700::1111"),
        ("https://8.8.8.8:444/", "8.8.8.8"),
        (URL("https://Hooks.Example.COM:9/x"), "hooks.example.com"),
    ],
)
def test_host_key(url: str | URL, key: str) -> None:
    assert host_key(url) == key


def test_host_key_same_for_port_and_scheme_variants() -> None:
    assert host_key("http://a.example:1") == host_key("https://A.example:2")


def test_host_key_without_host() -> None:
    with pytest.raises(ValueError, match="no host"):
        host_key("/relative")
