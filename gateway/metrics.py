"""Prometheus metrics, one registry per app so several apps (tests) never share counters."""

from __future__ import annotations

import collections
import os
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gateway import __version__
from gateway.models import HookStatus

# prometheus-client adds a `<name>_created` series (a Unix time) to each counter; scrapers read
# it as one more gauge per counter. Nothing here needs it.
disable_created_metrics()  # type: ignore[no-untyped-call]

HOOK_STATUSES = tuple(s.value for s in HookStatus)  # each always shown, 0 included
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120, 600, 3600, 86400)
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Histogram:
    """A histogram kept as plain numbers and rendered at scrape time. prometheus_client's takes a
    lock per observation (two with its sum) and walks its buckets in Python; these are observed
    on every request and every delivery, from the event loop only."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def family_sample(self) -> tuple[list[tuple[str, float]], float]:
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts,
                            strict=True):
            running += n
            buckets.append((bound, running))
        return buckets, self.total


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        # HTTP and publishing figures: plain numbers, rendered by _HotCollector.
        self.http_requests: collections.Counter[tuple[str, str, int]] = collections.Counter()
        self.http_seconds: dict[tuple[str, str], Histogram] = {}
        self.events_published = 0
        self.latency = Histogram(DELIVERY_BUCKETS)
        self.attempt_seconds = Histogram(ATTEMPT_BUCKETS)  # fed by the delivery loop
        # Read from storage by the /metrics handler just before rendering (see State).
        self.state = State()
        r.register(_HotCollector(self))
        r.register(_StateCollector(self.state))
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.final = Counter("gateway_deliveries_total", "Deliveries that reached a final status.",
                             ["status"], registry=r)
        self.backlog = Gauge("gateway_delivery_due_backlog",
                             "Deliveries due now and not yet claimed.", registry=r)
        self.hooks_changed = Counter("gateway_hooks_status_changes_total",
                                     "Hooks the gateway disabled or removed.", ["status"],
                                     registry=r)
        self.pruned = Counter("gateway_pruned_rows_total", "Rows the retention pruner deleted.",
                              ["table"], registry=r)
        self.db_bytes = Gauge("gateway_database_bytes", "Size of the database's files.",
                              ["file"], registry=r)
        self.db_writable = Gauge("gateway_database_writable",
                                 "1 while the database takes writes, 0 while it cannot.",
                                 registry=r)

    def watch_database(self, path: str, writable: Callable[[], bool]) -> None:
        """The database's file sizes and state, read at scrape time."""
        for file, name in (("db", path), ("wal", f"{path}-wal")):
            self.db_bytes.labels(file).set_function(partial(_size, name))
        self.db_writable.set_function(lambda: float(writable()))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests[method, route, status] += 1
        h = self.http_seconds.get((method, route))
        if h is None:
            h = self.http_seconds[method, route] = Histogram(LATENCY_BUCKETS)
        h.observe(seconds)

    def watch_engine(self, source: EngineCounts) -> None:
        """Per-attempt figures live as plain numbers in the delivery engine and are read at
        scrape time: a Prometheus counter takes a lock per increment, several per delivery."""
        self.registry.register(_EngineCollector(source))

    def watch_connections(self, source: ConnectionCounts) -> None:
        self.registry.register(_ConnectionCollector(source))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _size(path: str) -> float:
    try:
        return float(os.stat(path).st_size)
    except OSError:
        return 0.0


class State:
    """Figures that live in the database (hooks by status, pending deliveries), counted at
    scrape time by the /metrics handler (the collectors cannot await) and reused for a second,
    so that several scrapers at once cost one count."""

    __slots__ = ("counted_at", "hooks_by_status", "pending")

    def __init__(self) -> None:
        self.counted_at: float | None = None
        self.hooks_by_status: Mapping[str, int] = {}
        self.pending = 0

    def stale(self, now: float, max_age: float = 1.0) -> bool:
        return self.counted_at is None or not 0 <= now - self.counted_at < max_age


class _StateCollector(Collector):
    def __init__(self, state: State) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily("gateway_build_info", "The running gateway's version.",
                                  labels=["version"])
        build.add_metric([__version__], 1)
        yield build
        hooks = GaugeMetricFamily("gateway_hooks", "Hooks by status.", labels=["status"])
        for status in HOOK_STATUSES:
            hooks.add_metric([status], self._state.hooks_by_status.get(status, 0))
        yield hooks
        yield GaugeMetricFamily("gateway_deliveries_pending",
                                "Deliveries waiting for an attempt, due or not.",
                                value=self._state.pending)


class EngineCounts(Protocol):
    @property
    def attempt_counts(self) -> Mapping[str, int]: ...

    @property
    def in_flight_by_host(self) -> Mapping[str, int]: ...


class ConnectionCounts(Protocol):
    open: Callable[[], int]
    shed: int
    header_timeouts: int
    malformed: int


class _ConnectionCollector(Collector):
    def __init__(self, source: ConnectionCounts) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        s = self._source
        yield GaugeMetricFamily("gateway_http_connections", "Open client connections.",
                                value=s.open())
        yield CounterMetricFamily("gateway_http_connections_shed",
                                  "Connections closed because server.max_connections was reached.",
                                  value=s.shed)
        yield CounterMetricFamily("gateway_http_header_timeouts",
                                  "Connections closed for not sending a request head in time.",
                                  value=s.header_timeouts)
        yield CounterMetricFamily("gateway_http_malformed_requests",
                                  "Requests refused by the HTTP parser.", value=s.malformed)


class _EngineCollector(Collector):
    def __init__(self, source: EngineCounts) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        attempts = CounterMetricFamily("gateway_delivery_attempts", "Delivery attempts by outcome.",
                                       labels=["outcome"])
        for outcome, n in sorted(self._source.attempt_counts.items()):
            attempts.add_metric([outcome], n)
        yield attempts
        in_flight = GaugeMetricFamily("gateway_delivery_in_flight",
                                      "Attempts in flight per callback host.", labels=["host"])
        for host, n in sorted(self._source.in_flight_by_host.items()):
            in_flight.add_metric([host], n)
        yield in_flight


class _HotCollector(Collector):
    def __init__(self, m: Metrics) -> None:
        self._m = m

    def collect(self) -> Iterator[Metric]:
        m = self._m
        requests = CounterMetricFamily("gateway_http_requests", "HTTP requests answered.",
                                       labels=["method", "route", "status"])
        for (method, route, status), n in sorted(m.http_requests.items()):
            requests.add_metric([method, route, str(status)], n)
        yield requests
        seconds = HistogramMetricFamily("gateway_http_request_duration_seconds",
                                        "HTTP request latency.", labels=["method", "route"])
        for (method, route), h in sorted(m.http_seconds.items()):
            buckets, total = h.family_sample()
            seconds.add_metric([method, route], buckets, total)
        yield seconds
        events = CounterMetricFamily("gateway_events_published", "Events accepted.")
        events.add_metric([], m.events_published)
        yield events
        latency = HistogramMetricFamily("gateway_publish_to_delivered_seconds",
                                        "From publish to successful delivery.")
        buckets, total = m.latency.family_sample()
        latency.add_metric([], buckets, total)
        yield latency
        attempt = HistogramMetricFamily("gateway_attempt_duration_seconds",
                                        "One delivery attempt, from sending to the answer read "
                                        "(or the error).")
        buckets, total = m.attempt_seconds.family_sample()
        attempt.add_metric([], buckets, total)
        yield attempt
