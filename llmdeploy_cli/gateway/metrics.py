"""The gateway's Prometheus metrics (GET /metrics), on a registry of its own."""

from __future__ import annotations


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        p = "llmctl_gateway_"
        self.requests = Counter(
            p + "requests", "Requests by model and status.", ["model", "status"], registry=r
        )
        self.in_flight = Gauge(p + "in_flight", "Requests in flight.", ["model"], registry=r)
        self.queue = Gauge(p + "queue_depth", "Requests waiting.", ["model"], registry=r)
        self.wait = Histogram(
            p + "queue_wait_seconds",
            "Time a request waited for a start or a slot.",
            ["model"],
            registry=r,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
        )
        self.starts = Counter(
            p + "starts", "Engine starts by result.", ["model", "result"], registry=r
        )
        self.start_seconds = Histogram(
            p + "start_duration_seconds",
            "Request for a stopped model to ready.",
            ["model"],
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
        )
        self.stops = Counter(
            p + "stops",
            "Engine stops by reason (evicted, ttl, crashed, removed, unloaded).",
            ["model", "reason"],
            registry=r,
        )
        self.evictions = Counter(
            p + "evictions", "Evictions for another model.", ["model", "for_model"], registry=r
        )
        self.ttl_unloads = Counter(
            p + "ttl_unloads", "Unloads after the ttl.", ["model"], registry=r
        )
        self.ttfb = Histogram(
            p + "time_to_first_byte_seconds",
            "Arrival to the first response byte sent, through the gateway.",
            ["model"],
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )

    def observe(self, kind: str, name: str, value, **kw) -> None:
        if kind == "queue":
            self.queue.labels(name).set(value)
        elif kind == "wait":
            self.wait.labels(name).observe(value)
        elif kind == "in_flight":
            self.in_flight.labels(name).set(value)
        elif kind == "start":
            self.starts.labels(name, "ok" if kw.get("ok") else "failed").inc()
            if kw.get("ok"):
                self.start_seconds.labels(name).observe(value)
        elif kind == "stop":
            reason = str(value)
            if reason.startswith("evicted for "):
                self.evictions.labels(name, reason[len("evicted for ") :]).inc()
                reason = "evicted"
            elif reason == "ttl":
                self.ttl_unloads.labels(name).inc()
            self.stops.labels(name, reason).inc()

    def request(self, name: str, status: int) -> None:
        self.requests.labels(name, str(status)).inc()

    def first_byte(self, name: str, seconds: float) -> None:
        self.ttfb.labels(name).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
