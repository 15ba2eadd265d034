"""The target policy as tables: which addresses and spellings are refused, and what a resolved
answer must look like to pass. Lookups come from a table the test controls (tests/fake_dns.py),
so no query reaches a real resolver; nothing here connects anywhere.

Each row here was added because a one-line mutant of gateway/targets.py survived the rest of the
suite (tools/mutate.py --module targets)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from gateway.targets import (
    HTTP_HINT,
    PRIVATE_HINT,
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
from tests import fake_dns
from tests.fake_dns import PUBLIC4, PUBLIC6, V4, V6, Answer

STRICT = TargetPolicy()
PRIVATE_OK = TargetPolicy(allow_http=True, allow_private=True)

# (address, a word the reason must contain)
REFUSED = [
    ("168.63.129.16", "Azure wireserver"),  # publicly numbered, yet the platform's host endpoint
    ("192.88.99.1", "6to4 relay"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.7", "documentation"),
    ("192.0.0.9", "IETF protocol"),
    ("198.19.255.255", "benchmarking"),
    ("100.127.255.255", "CGNAT"),
    ("0.255.255.255", "this-network"),
    ("239.255.255.255", "multicast"),
    ("255.255.255.254", "reserved"),
    # Outside 2000::/3, the only IPv6 block handed out for global unicast.
    ("4000::1", "reserved"),
    ("c000::1", "reserved"),
    ("1::1", "reserved"),
    # Inside 2000::/3 but not globally reachable (2001::/23 is IANA's special-purpose block).
    ("2001:100::1", "reserved"),
    ("3fff::1", "documentation"),
    ("3fff:fff:ffff::1", "documentation"),
    ("5f00::1", "SRv6"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2001::1", "Teredo"),
    ("2001:2::1", "benchmarking"),
    ("2001:10::1", "ORCHID"),
    ("2001:20::1", "ORCHIDv2"),
    ("100::1", "discard-only"),
    ("febf::1", "link-local"),
    ("feff::1", "site-local"),
    ("::ffff:0:a00:1", "private"),  # IPv4-translated 10.0.0.1
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("::a00:1", "private"),  # IPv4-compatible 10.0.0.1
]

# Next to a refused block, or in the blocks Python's ipaddress calls global: allowed.
ALLOWED = [
    "168.63.129.15",
    "168.63.129.17",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700::1111",
    "2a00:1450:4001::1",
    "3fff:1000::1",  # just past 3fff::/20
    "2001:4860:4860::8888",
    "::ffff:0:808:808",  # IPv4-translated 8.8.8.8
]


@pytest.mark.parametrize(("address", "word"), REFUSED)
def test_refused_address(address: str, word: str) -> None:
    reason = address_refusal(ipaddress.ip_address(address))
    assert reason is not None and word in reason, reason
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(TargetRefused, match=word):
        check_url_syntax(f"https://{host}/hook", STRICT)


@pytest.mark.parametrize("address", ALLOWED)
def test_allowed_address(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None
    host = f"[{address}]" if ":" in address else address
    assert check_url_syntax(f"https://{host}/hook", STRICT).raw_host == address


# (URL, a word the refusal must contain)
REFUSED_SPELLINGS = [
    ("https://hooks.example.com/\x7f", "control characters"),  # DEL
    ("https://hooks.exa\x7fmple.com/", "control characters"),
    ("https://hooks.example.com/\x1f", "control characters"),
    ("https://hooks.example.com/\x00", "control characters"),
    ("https://hooks.example.com!/", "characters not allowed"),  # whole host, not a prefix
    ("https://hooks.example.com$/", "characters not allowed"),
    ("https://a~b.example.com/", "characters not allowed"),
    ("https://" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 62 + "/",
     "too long"),  # 254 characters: one over the limit
    ("https://" + "a" * 64 + "/", "too long"),
    ("https://example.0x/", "IPv4"),
    ("https://example.0/", "IPv4"),
    ("https://example.08/", "IPv4"),
    ("https://example.1./", "IPv4"),
]

# (URL, policy, the whole refusal)
REFUSALS = [
    ("https://0x7f000001/", STRICT,
     f"address 127.0.0.1 (written 0x7f000001) is loopback{PRIVATE_HINT}"),
    ("https://127.0.0.1/", STRICT, f"address 127.0.0.1 is loopback{PRIVATE_HINT}"),
    ("https://[::1]/", STRICT, f"address ::1 is loopback{PRIVATE_HINT}"),
    ("https://127.1/", PRIVATE_OK, "write the address as 127.0.0.1 instead of 127.1"),
    ("ftp://files.example/", STRICT, "scheme ftp is not allowed (https only)"),
    ("http://files.example/", STRICT, f"scheme http is not allowed (https only{HTTP_HINT})"),
    ("ftp://files.example/", PRIVATE_OK, "scheme ftp is not allowed (http and https only)"),
    ("https://[::1/", PRIVATE_OK, "URL is not valid"),
    ("https://hooks.example.com:99999/", PRIVATE_OK, "port out of range (1-65535)"),
]


@pytest.mark.parametrize(("url", "policy", "reason"), REFUSALS)
def test_refusal_reason(url: str, policy: TargetPolicy, reason: str) -> None:
    with pytest.raises(TargetRefused) as info:
        check_url_syntax(url, policy)
    assert info.value.reason == reason


def test_a_scoped_link_local_address_is_taken_as_written_when_private_is_allowed() -> None:
    # yarl keeps the zone percent-encoded, so the host is not the address's own spelling.
    assert check_url_syntax("http://[fe80::1%25eth0]:8080/", PRIVATE_OK).port == 8080


ALLOWED_SPELLINGS = [
    "https://hooks.example.com/~user/!$&'()*+,;=:@",  # those characters are fine in a path
    "https://" + "a" * 63 + ".example/",
    "https://" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61 + "/",  # 253
    "https://" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61 + "./",  # and a dot
    "https://under_score.example/",
    "https://1.example/",
    "https://example.x1/",
    "https://example.0a/",
]


@pytest.mark.parametrize(("url", "word"), REFUSED_SPELLINGS)
def test_refused_spelling(url: str, word: str) -> None:
    with pytest.raises(TargetRefused, match=word):
        check_url_syntax(url, PRIVATE_OK)


@pytest.mark.parametrize("url", ALLOWED_SPELLINGS)
def test_allowed_spelling(url: str) -> None:
    assert check_url_syntax(url, STRICT).scheme == "https"


# (host as a resolver would read it, the address it spells): the inet_aton forms
SPELLED = [
    ("0x", "0.0.0.0"),  # a bare 0x is zero
    ("0x.1", "0.0.0.1"),
    ("0x.0xff", "0.0.0.255"),
    ("001234567", "0.5.57.119"),  # every octal digit
    ("1023456789", "61.0.182.21"),  # every decimal digit
    ("0x89abcdef", "137.171.205.239"),
    ("0X89ABCDEF", "137.171.205.239"),
    ("1.", "0.0.0.1"),  # a trailing dot names the same host
    ("1.2.3.", "1.2.0.3"),
    ("255.255.65535", "255.255.255.255"),
    ("0xff.0xffffff", "255.255.255.255"),
]

NOT_SPELLED = ["1.256.1", "1.16777216", "1.2.65536", "1.2.3.256", "256.1", "1.2.3.4.0",
               "[::1", "x::1]", "[::1]x", "[1.2.3.4]", "0x1g", "09", "1e3"]


@pytest.mark.parametrize(("host", "address"), SPELLED)
def test_numeric_spelling(host: str, address: str) -> None:
    assert parse_host_ip(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", NOT_SPELLED)
def test_not_a_numeric_spelling(host: str) -> None:
    assert parse_host_ip(host) is None


# -- resolved answers --------------------------------------------------------------------------

@pytest.fixture
async def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, Answer]:
    return fake_dns.install(monkeypatch)


# (answer, the refusal's words): whichever record is bad, wherever it comes in the answer.
REFUSED_ANSWERS: list[tuple[Answer, str]] = [
    ([(V4, PUBLIC4), (V4, "10.0.0.7")], "address 10.0.0.7 (from mixed.test) is private"),
    ([(V4, "10.0.0.7"), (V4, PUBLIC4)], "address 10.0.0.7 (from mixed.test) is private"),
    ([(V6, PUBLIC6), (V4, PUBLIC4), (V6, "::1")], "is loopback"),
    ([(V4, PUBLIC4), (V4, "169.254.169.254")], "cloud metadata"),
    ([(V4, PUBLIC4), (V4, "168.63.129.16")], "Azure"),
    ([(V4, PUBLIC4), (V4, "not-an-address")], "mixed.test resolved to an unparseable address"),
]


@pytest.mark.parametrize(("answer", "words"), REFUSED_ANSWERS)
async def test_check_target_judges_every_resolved_address(
        dns: dict[str, Answer], answer: Answer, words: str) -> None:
    dns["mixed.test"] = answer
    with pytest.raises(TargetRefused) as info:
        await check_target("https://mixed.test/hook", STRICT)
    assert words in str(info.value)


@pytest.mark.parametrize(("answer", "words"), REFUSED_ANSWERS)
async def test_policy_resolver_judges_every_resolved_address(
        dns: dict[str, Answer], answer: Answer, words: str) -> None:
    dns["mixed.test"] = answer
    with pytest.raises(TargetRefused) as info:
        await PolicyResolver(STRICT).resolve("mixed.test", 443, family=socket.AF_UNSPEC)
    assert words in str(info.value)


async def test_a_literal_address_is_its_own_answer(dns: dict[str, Answer]) -> None:
    assert await check_target("https://8.8.8.8/hook", STRICT) == ["8.8.8.8"]
    assert await check_target("https://[2606:4700::1111]/", STRICT) == ["2606:4700::1111"]


@pytest.mark.parametrize(("url", "reason"), [
    ("https://nohost.test/", "host does not resolve: nohost.test"),
    ("https://\u0431\u0443\u043a.test/", "host does not resolve: \u0431\u0443\u043a.test"),  # as written
    ("https://a..b/", "host does not resolve: a..b"),  # the resolver's IDNA step refuses it
])
async def test_a_name_that_does_not_resolve(dns: dict[str, Answer], url: str, reason: str) -> None:
    with pytest.raises(TargetRefused) as info:
        await check_target(url, STRICT)
    assert info.value.reason == reason


async def test_policy_resolver_numeric_spellings(dns: dict[str, Answer]) -> None:
    resolver = PolicyResolver(STRICT)
    assert resolver.policy is STRICT
    with pytest.raises(TargetRefused) as info:
        await resolver.resolve("0x7f000001", 443)
    assert info.value.reason == "address 127.0.0.1 (written 0x7f000001) is loopback"
    allowed = PolicyResolver(PRIVATE_OK)
    [result] = await allowed.resolve("0x7f000001", 80)
    assert (result["hostname"], result["host"], result["port"]) == ("0x7f000001", "127.0.0.1", 80)


async def test_policy_resolver_keeps_a_scope_and_the_port(dns: dict[str, Answer]) -> None:
    dns["lan.test"] = [(V6, "fe80::1%2"), (V4, "192.168.1.5")]
    results = await PolicyResolver(PRIVATE_OK).resolve("lan.test", 8080, family=socket.AF_UNSPEC)
    assert [(r["host"], r["port"], r["family"]) for r in results] == [
        ("fe80::1%2", 8080, V6), ("192.168.1.5", 8080, V4)]
    with pytest.raises(TargetRefused, match="link-local"):
        await PolicyResolver(STRICT).resolve("lan.test", 8080, family=socket.AF_UNSPEC)
    dns["public.test"] = [(V4, PUBLIC4)]
    [result] = await PolicyResolver(STRICT).resolve("public.test")
    assert result["port"] == 0


async def test_an_empty_answer_is_refused(dns: dict[str, Answer]) -> None:
    dns["empty.test"] = []
    with pytest.raises(TargetRefused, match=r"^host does not resolve: empty\.test$"):
        await check_target("https://empty.test/hook", STRICT)


async def test_an_unparseable_answer_is_refused_even_when_private_is_allowed_to_resolve(
        dns: dict[str, Answer]) -> None:
    dns["odd.test"] = [(V4, "not-an-address")]
    with pytest.raises(TargetRefused, match="unparseable"):
        await check_target("https://odd.test/hook", STRICT)
    # allow_private skips the judging altogether: there is nothing to refuse.
    assert await check_target("https://odd.test/hook", PRIVATE_OK) == ["not-an-address"]


async def test_public_answers_pass_once_each_in_order(dns: dict[str, Answer]) -> None:
    dns["public.test"] = [(V6, PUBLIC6), (V4, PUBLIC4), (V6, PUBLIC6)]
    assert await check_target("https://public.test/hook", STRICT) == [PUBLIC6, PUBLIC4]
    results = await PolicyResolver(STRICT).resolve("public.test", 8443, family=socket.AF_UNSPEC)
    assert [(r["hostname"], r["host"], r["port"], r["family"]) for r in results] == [
        ("public.test", PUBLIC6, 8443, V6), ("public.test", PUBLIC4, 8443, V4),
        ("public.test", PUBLIC6, 8443, V6)]
    assert all(r["flags"] == socket.AI_NUMERICHOST | socket.AI_NUMERICSERV for r in results)


async def test_check_target_asks_for_the_url_port(dns: dict[str, Answer],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []
    loop = asyncio.get_running_loop()
    answer = loop.getaddrinfo

    async def recording(host: str, port: Any, **kw: Any) -> list[tuple[Any, ...]]:
        asked.append((host, port, kw.get("type")))
        return await answer(host, port, **kw)

    monkeypatch.setattr(loop, "getaddrinfo", recording)
    dns["public.test"] = [(V4, PUBLIC4)]
    await check_target("https://public.test:8443/hook", STRICT)
    await check_target("https://public.test/hook", STRICT)
    assert asked == [("public.test", 8443, socket.SOCK_STREAM), ("public.test", 443, socket.SOCK_STREAM)]


def test_refusal_of_follows_a_cause_alone() -> None:
    refused = TargetRefused("address 10.0.0.1 is private")
    outer = RuntimeError("wrapped")
    outer.__cause__ = refused  # no __context__: raised elsewhere, chained by hand
    assert refusal_of(outer) is refused


@pytest.mark.parametrize(("url", "key"), [("http://0x7f.1:8080/", "127.0.0.1"),
                                          ("https://0X08080808/", "8.8.8.8")])
def test_host_key_of_a_numeric_spelling_is_the_address(url: str, key: str) -> None:
    assert host_key(url) == key
