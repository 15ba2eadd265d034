"""GET /metrics read as Prometheus reads it: prometheus-client's own parser over the text."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway import __version__
from gateway.models import DeliveryStatus
from tests.conftest import Gateway, Receiver, wait_until

StartGateway = Callable[..., Awaitable[Gateway]]


async def scrape(gw: Gateway) -> dict[str, Any]:
    """The families of one scrape, by name; each sample's name is checked to belong to one."""
    status, text, _ = await gw.call("GET", "/metrics", gw.admin)
    assert status == 200, text
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(families: dict[str, Any]) -> list[Sample]:
    return [s for f in families.values() for s in f.samples]


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    found = [s.value for s in samples(families) if s.name == sample and s.labels == labels]
    assert len(found) == 1, (sample, labels, found)
    return float(found[0])


async def delivered_twice(gw: Gateway, receiver: Receiver) -> None:
    """Two events delivered, and their attempts recorded (the receiver has a request before the
    gateway has read its answer)."""
    hook = await gw.hook(receiver)
    await gw.publish()
    await gw.publish()
    await recorded(gw, hook["id"], 2)


async def recorded(gw: Gateway, hook_id: str, n: int) -> None:
    async def done() -> bool:
        page, _ = await gw.storage.list_deliveries(hook_id, DeliveryStatus.DELIVERED, n + 1, None)
        return len(page) == n

    await wait_until(done, what=f"{n} deliveries recorded as delivered")


async def test_no_created_series(start_gateway: StartGateway, receiver: Receiver) -> None:
    gw = await start_gateway()
    await delivered_twice(gw, receiver)
    families = await scrape(gw)
    # (The counters that had a _created series before.)
    assert value(families, "gateway_deliveries_total", status="delivered") >= 0
    created = [s.name for s in samples(families) if s.name.endswith("_created")]
    assert created == []
    assert not [name for name in families if name.endswith("_created")]


async def test_process_and_python_collectors(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    families = await scrape(gw)
    assert value(families, "process_resident_memory_bytes") > 0
    assert value(families, "process_open_fds") > 0
    assert "python_info" in families
    assert families["python_gc_collections"].type == "counter"


async def test_build_info(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    families = await scrape(gw)
    assert families["gateway_build_info"].type == "gauge"
    assert value(families, "gateway_build_info", version=__version__) == 1


async def test_hooks_by_status_and_pending_deliveries(
        start_gateway: StartGateway, make_receiver: Callable[..., Awaitable[Receiver]]) -> None:
    gw = await start_gateway()
    live, held = await make_receiver(), await make_receiver()
    active = await gw.hook(live)
    paused = await gw.hook(held)
    status, body, _ = await gw.call("PATCH", f"/v1/hooks/{paused['id']}", gw.subscriber,
                                    json={"status": "paused"})
    assert status == 200, body
    gone = await gw.hook(await make_receiver())
    assert (await gw.call("DELETE", f"/v1/hooks/{gone['id']}", gw.subscriber))[0] == 204
    for _ in range(3):
        await gw.publish()
    await recorded(gw, active["id"], 3)
    families = await scrape(gw)
    assert families["gateway_hooks"].type == "gauge"
    # The deleted hook counts nowhere; every status is shown, 0 included.
    assert {s.labels["status"]: s.value for s in families["gateway_hooks"].samples} == {
        "active": 1, "paused": 1, "disabled": 0, "removed": 0}
    # The paused hook's three wait; the active one's were delivered.
    assert value(families, "gateway_deliveries_pending") == 3
    assert held.deliveries == []


async def test_the_counts_follow_the_database(start_gateway: StartGateway,
                                              receiver: Receiver) -> None:
    """Counted per scrape (reused within a second only): a change shows on a later scrape."""
    gw = await start_gateway(run_delivery_loop=False)
    families = await scrape(gw)
    assert value(families, "gateway_hooks", status="active") == 0
    assert value(families, "gateway_deliveries_pending") == 0
    await gw.hook(receiver)
    await gw.publish()
    gw.clock.advance(1.5)  # type: ignore[attr-defined]
    families = await scrape(gw)
    assert value(families, "gateway_hooks", status="active") == 1
    assert value(families, "gateway_deliveries_pending") == 1
    await gw.engine.run_until_idle()
    gw.clock.advance(1.5)  # type: ignore[attr-defined]
    families = await scrape(gw)
    assert value(families, "gateway_deliveries_pending") == 0


async def test_attempt_duration_histogram(start_gateway: StartGateway,
                                          receiver: Receiver) -> None:
    gw = await start_gateway()
    families = await scrape(gw)
    assert value(families, "gateway_attempt_duration_seconds_count") == 0
    await delivered_twice(gw, receiver)
    families = await scrape(gw)
    hist = families["gateway_attempt_duration_seconds"]
    assert hist.type == "histogram"
    assert value(families, "gateway_attempt_duration_seconds_count") == 2
    assert value(families, "gateway_attempt_duration_seconds_bucket", le="+Inf") == 2
    assert value(families, "gateway_attempt_duration_seconds_sum") > 0
    buckets = [s.value for s in hist.samples if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets)  # cumulative
    attempts = sum(s.value for s in families["gateway_delivery_attempts"].samples)
    assert attempts == 2
