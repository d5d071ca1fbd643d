"""The Prometheus reference: every metric family camserver's registry exposes, read from the registry itself."""

from __future__ import annotations

import time
from typing import Any

PROMETHEUS_SUFFIX = {"counter": "_total", "histogram": "", "gauge": ""}


def _families(service: bool) -> dict[str, tuple[str, str, list[str]]]:
    """name -> (type, help, labels) of what /metrics shows for a server with one camera."""
    from ..hub import CameraHub
    from ..integrations.metrics import Metrics, MetricSources

    hub = CameraHub(4, declared_ids=("door",), clock=time.time)
    remote: dict[str, Any] = {"url": "grpc://HOST:8001", "state": "ok", "rtt_ms": 1.0, "service_mean_batch": 1.0,
                              "failures": 0}
    sources = MetricSources(hub, lambda camera: 0, lambda camera: 0, lambda: {("door", "person"): 0},
                            lambda: 0, lambda: 0, (lambda: remote) if service else (lambda: None))
    metrics = Metrics(sources)
    metrics.observe_batch(1, 0.01)
    families = {}
    for family in metrics.registry.collect():
        labels = sorted({k for s in family.samples for k in s.labels if k != "le"})
        families[family.name + PROMETHEUS_SUFFIX.get(family.type, "")] = (family.type, family.documentation, labels)
    return families


def metrics_page() -> str:
    """The metrics reference page."""
    from . import cell

    local, remote = _families(False), _families(True)
    out = ["# Prometheus metrics", "",
           "`GET /metrics` in Prometheus' text format (the viewer token applies, as a bearer token). Counters and "
           "gauges are read from the cameras at scrape time; the histograms are observed once per inference "
           "call. Histograms expose `_bucket`, `_sum` and `_count`.", "",
           "| metric | type | labels | what | when |", "| --- | --- | --- | --- | --- |"]
    for name, (kind, doc, labels) in remote.items():
        when = "always" if name in local else "with `detect.backend = \"triton\"`"
        out.append(f"| `{name}` | {kind} | {', '.join(f'`{x}`' for x in labels)} | {cell(doc)} | {when} |")
    out += ["", "Motion, recording and storage have no metrics of their own: `/api/cameras` and `/healthz` show them.",
            "", "```yaml", "scrape_configs:", "  - job_name: camserver",
            '    static_configs: [{ targets: ["camserver-host:8080"] }]',
            '    authorization: { credentials: "<http.token>" }   # only when a viewer token is set', "```"]
    return "\n".join(out) + "\n"
