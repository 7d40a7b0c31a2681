"""The metrics service's readiness and Prometheus handlers: the shared ones, plus the ingest.

The ingest runs as its own process; what it reports lives in Redis (its
health key, its counters, the stream's backlog), so these read it from
there. The ingest's state never makes this API unready: the API serves the
stored history whether or not heartbeats are flowing.
"""

from __future__ import annotations

from typing import Any

from connexion.lifecycle import ConnexionResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sm_metrics import backlog, counters
from sm_metrics.context import current
from sm_shared import probes
from sm_shared.streams import METRICS_INGEST_HEALTH_KEY

GAUGE_HELP = {
    "stream_length": "Entries in the metrics stream",
    "unread": "Entries of the metrics stream no ingest consumer has read yet",
    "pending": "Entries read by an ingest consumer but not yet acknowledged",
    "oldest_pending_age": "Seconds since the oldest unacknowledged entry was appended",
    "consumers": "Consumers in the ingest's consumer group",
}


async def ingest_status() -> dict[str, Any]:
    ctx = current()
    alive = bool(await ctx.redis.exists(METRICS_INGEST_HEALTH_KEY))
    return {"alive": alive, **await backlog.lag(ctx.redis)}


async def readyz() -> Any:
    answer = await probes.readyz()
    if isinstance(answer, dict):
        answer["ingest"] = await ingest_status()
    return answer


class _Snapshot(Collector):
    """Figures read from Redis just before the exposition is rendered."""

    def __init__(self, status: dict[str, Any], counts: counters.Counts) -> None:
        self.status = status
        self.counts = counts

    def collect(self) -> Any:
        alive = GaugeMetricFamily("metrics_ingest_alive", "1 while an ingest process runs")
        alive.add_metric([], 1.0 if self.status["alive"] else 0.0)
        yield alive
        for name, text in GAUGE_HELP.items():
            value = self.status.get(name)
            if value is not None:
                gauge = GaugeMetricFamily(f"metrics_ingest_{name}", text)
                gauge.add_metric([], float(value))
                yield gauge
        for name, text in counters.COUNTER_HELP.items():
            counter = CounterMetricFamily(f"metrics_ingest_{name}", text)
            counter.add_metric([], float(getattr(self.counts, name)))
            yield counter


async def metrics() -> ConnexionResponse:
    ctx = current()
    status = await ingest_status()
    raw: Any = await ctx.redis.hgetall(counters.COUNTERS_KEY)  # type: ignore[misc]
    counts = counters.parse(raw)
    snapshot = CollectorRegistry()
    snapshot.register(_Snapshot(status, counts))
    return ConnexionResponse(
        status_code=200,
        body=generate_latest(ctx.state.metrics) + generate_latest(snapshot),
        content_type=CONTENT_TYPE_LATEST,
    )
