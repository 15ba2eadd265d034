"""Prometheus metrics, one registry per app so several apps (tests) never share counters."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120, 600, 3600, 86400)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self._http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.requests = Counter("gateway_http_requests_total", "HTTP requests answered.",
                                ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram("gateway_http_request_duration_seconds",
                                         "HTTP request latency.", ["method", "route"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.events = Counter("gateway_events_published_total", "Events accepted.", registry=r)
        self.final = Counter("gateway_deliveries_total", "Deliveries that reached a final status.",
                             ["status"], registry=r)
        self.backlog = Gauge("gateway_delivery_due_backlog",
                             "Deliveries due now and not yet claimed.", registry=r)
        self.latency = Histogram("gateway_publish_to_delivered_seconds",
                                 "From publish to successful delivery.",
                                 buckets=DELIVERY_BUCKETS, registry=r)
        self.hooks_changed = Counter("gateway_hooks_status_changes_total",
                                     "Hooks the gateway disabled or removed.", ["status"],
                                     registry=r)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # labels() hashes and takes a lock per call; on the request path the children are kept.
        key = (method, route, status)
        pair = self._http_children.get(key)
        if pair is None:
            pair = self._http_children[key] = (
                self.requests.labels(method, route, str(status)),
                self.request_seconds.labels(method, route),
            )
        pair[0].inc()
        pair[1].observe(seconds)

    def watch_engine(self, source: EngineCounts) -> None:
        """Per-attempt figures live as plain numbers in the delivery engine and are read at
        scrape time: a Prometheus counter takes a lock per increment, several per delivery."""
        self.registry.register(_EngineCollector(source))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class EngineCounts(Protocol):
    @property
    def attempt_counts(self) -> Mapping[str, int]: ...

    @property
    def in_flight_by_host(self) -> Mapping[str, int]: ...


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
