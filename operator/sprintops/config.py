"""Operator settings, from flags and environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").split(",") if v]


@dataclass(frozen=True)
class Config:
    namespaces: list[str] = field(
        default_factory=lambda: _split(os.environ.get("SPRINTOPS_NAMESPACES"))
    )
    prometheus_url: str = field(
        default_factory=lambda: os.environ.get(
            "SPRINTOPS_PROMETHEUS_URL", "http://prometheus.monitoring:9090"
        )
    )
    workers: int = field(default_factory=lambda: int(os.environ.get("SPRINTOPS_WORKERS", "32")))
    # Where /metrics is served; 0 turns it off.
    metrics_port: int = field(
        default_factory=lambda: int(os.environ.get("SPRINTOPS_METRICS_PORT", "8080"))
    )
    # Route 53 requests per second at most, for all releases together (0: unpaced).
    # 5 is the conservative per-account limit; raise it for accounts with a bigger budget.
    route53_max_rate: float = field(
        default_factory=lambda: float(os.environ.get("SPRINTOPS_ROUTE53_MAX_RATE", "5"))
    )
    # 0: the rate above in any one second (the old per-account limit). Accounts on the newer
    # token bucket (10 requests/s, burst 50) set the rate to 10 and this to 50.
    route53_burst: int = field(
        default_factory=lambda: int(os.environ.get("SPRINTOPS_ROUTE53_BURST", "0"))
    )
    # Seconds at least between a hosted zone's change batches: a fleet stepping together
    # shares a few batches; a lone release, whose steps are a bake apart, never waits.
    route53_write_spacing: float = field(
        default_factory=lambda: float(os.environ.get("SPRINTOPS_ROUTE53_WRITE_SPACING", "1"))
    )
    # Seconds at least between a hosted zone's listings: 0 shares a listing only among reads
    # due together. A fleet sets it (see the README): spaced, a lone release's two read-backs
    # of a step, a second apart, would wait half a second on average.
    route53_read_spacing: float = field(
        default_factory=lambda: float(os.environ.get("SPRINTOPS_ROUTE53_READ_SPACING", "0"))
    )
    # Seconds a replica's peering record is honoured without a refresh (failover time).
    peering_lifetime: int = field(
        default_factory=lambda: int(os.environ.get("SPRINTOPS_PEERING_LIFETIME", "60"))
    )
    # Shortest rate() window of the built-in checks, in seconds (a few scrape intervals).
    min_query_range: float = field(
        default_factory=lambda: float(os.environ.get("SPRINTOPS_MIN_QUERY_RANGE", "10"))
    )
    # The operator's own namespace: where the global freeze ConfigMap lives.
    namespace: str = field(
        default_factory=lambda: os.environ.get("SPRINTOPS_NAMESPACE", "sprintops")
    )
    # Gate endpoints and notification receivers (a file the chart mounts from a Secret).
    endpoints_file: str | None = field(
        default_factory=lambda: os.environ.get("SPRINTOPS_ENDPOINTS_FILE") or None
    )
