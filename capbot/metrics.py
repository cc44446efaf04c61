"""Prometheus metrics for `capbot run`: what the core did on every platform, and what the web server answered.

One `Metrics` object per process, with its own `CollectorRegistry` (not the library's global one), so tests
and several apps in one process never share counters. `Metrics` is the core's `CoreObserver`; the web app
counts requests and serves `render()` at `/metrics` in the Prometheus text format.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Seconds: a tiny model on a GPU answers in milliseconds, the base model on a busy CPU in several seconds.
CAPTION_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The counters, histograms and gauges capbot exports; thread-safe (the client library locks)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("capbot_http_requests", "HTTP requests answered, by route template, method and status.",
                                ["route", "method", "status"], registry=r)
        self.client_aborts = Counter("capbot_http_client_aborts", "Requests the client hung up on before the answer "
                                     "(e.g. mid-upload): the client's doing, not counted as answered.",
                                     ["route", "method"], registry=r)
        self.request_timeouts = Counter("capbot_http_request_timeouts", "Requests whose headers or body did not "
                                        "arrive in time (answered 408 and closed).", ["phase"], registry=r)
        self.caption_seconds = Histogram("capbot_caption_seconds", "Time the captioner took per caption.",
                                         ["platform"], buckets=CAPTION_BUCKETS, registry=r)
        self.captions = Counter("capbot_captions", "Captions made and stored, by platform.", ["platform"], registry=r)
        self.caption_refusals = Counter("capbot_caption_refusals", "Caption requests refused or failed, by reason.",
                                        ["platform", "reason"], registry=r)
        self.corrections = Counter("capbot_corrections", "Corrections accepted or refused, by reason.",
                                   ["platform", "outcome", "reason"], registry=r)
        self.rate_limit_refusals = Counter("capbot_rate_limited", "Requests refused by a per-user rate limit.",
                                    ["platform", "action"], registry=r)
        self.queue_depth = Gauge("capbot_queue_depth", "Caption jobs waiting for a worker.", registry=r)
        self._model_version: Callable[[], str] | None = None
        self._connections: tuple = ()  # bots.connection.ConnectionTracker objects
        r.register(_ModelVersionCollector(self))
        r.register(_ConnectionCollector(self))

    # --- wiring ---

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Read the queue depth from `depth()` at every scrape."""
        self.queue_depth.set_function(depth)

    def watch_model(self, version: Callable[[], str]) -> None:
        """Read the serving model version from `version()` at every scrape."""
        self._model_version = version

    def watch_connections(self, trackers: Iterable) -> None:
        """Read each platform connection's state (`bots.connection.ConnectionTracker`) at every scrape."""
        self._connections = tuple(trackers)

    def connection_states(self) -> list:
        """The watched connections' states now."""
        return [tracker.state() for tracker in self._connections]

    def model_version(self) -> str | None:
        """The serving model version, or None when unknown or unreadable."""
        if self._model_version is None:
            return None
        try:
            return self._model_version()
        except Exception:  # a scrape must not fail because the captioner is mid-swap or remote
            log.warning("could not read the model version for /metrics", exc_info=True)
            return None

    # --- bots.core.CoreObserver ---

    def captioned(self, platform: str, seconds: float) -> None:
        self.captions.labels(platform).inc()
        self.caption_seconds.labels(platform).observe(seconds)

    def caption_refused(self, platform: str, reason: str) -> None:
        self.caption_refusals.labels(platform, reason).inc()

    def correction(self, platform: str, accepted: bool, reason: str) -> None:
        self.corrections.labels(platform, "accepted" if accepted else "refused", reason).inc()

    def rate_limited(self, platform: str, action: str) -> None:
        self.rate_limit_refusals.labels(platform, action).inc()

    # --- the web server ---

    def request(self, route: str, method: str, status: int) -> None:
        """Count one answered HTTP request under its route template (e.g. /v1/captions/{caption_id})."""
        self.requests.labels(route, method, str(status)).inc()

    def client_aborted(self, route: str, method: str) -> None:
        """Count a request the client hung up on before its answer."""
        self.client_aborts.labels(route, method).inc()

    def request_timed_out(self, phase: str) -> None:
        """Count a request whose `phase` ("headers" or "body") took longer than its bound."""
        self.request_timeouts.labels(phase).inc()

    def render(self) -> bytes:
        """Every metric in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class _ModelVersionCollector(Collector):
    """`capbot_model_info{version="..."} 1` for the version serving at scrape time (an info-style gauge)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("capbot_model_info", "The model version serving captions (value is always 1).",
                                   labels=["version"])
        version = self._metrics.model_version()
        if version is not None:
            family.add_metric([version], 1.0)
        yield family

    def describe(self) -> Iterable[Metric]:
        return []


class _ConnectionCollector(Collector):
    """`capbot_platform_connected{platform}` (1 connected, 0 not) and `capbot_platform_connect_failures_total`."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("capbot_platform_connected", "Whether capbot's connection to a chat platform it "
                               "connects to itself (Discord, Slack Socket Mode) is up (1) or not (0).",
                               labels=["platform"])
        failures = CounterMetricFamily("capbot_platform_connect_failures", "Failed attempts to connect to a chat "
                                       "platform since start-up.", labels=["platform"])
        for state in self._metrics.connection_states():
            up.add_metric([state.platform], 1.0 if state.connected else 0.0)
            failures.add_metric([state.platform], float(state.failures))
        yield up
        yield failures

    def describe(self) -> Iterable[Metric]:
        return []
