"""Prometheus metrics at GET /metrics, following prometheus-client's naming rules.

Counters and gauges are read from the cameras at scrape time (a custom collector), so they
cost nothing per frame; the two histograms are observed once per inference batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..hub import CameraHub

CAMERA_COUNTERS = (
    ("frames_received", "Camera frames received"),
    ("frames_processed", "Camera frames processed (inferred or passed on)"),
    ("frames_dropped", "Camera frames replaced by a newer one before the detector took them"),
    ("frames_rejected", "Camera frames rejected (not a JPEG, too large, undecodable)"),
)


@dataclass(frozen=True)
class MetricSources:
    """Where the figures come from, read at scrape time: the stages keep them anyway."""

    hub: CameraHub
    viewers: Callable[[str], int]  # open streams of a camera
    detected: Callable[[str], int]  # frames of a camera sent to the detector
    events_started: Callable[[], Mapping[tuple[str, str], int]]  # events per (camera, label)
    mqtt_dropped: Callable[[], int]
    webhook_failures: Callable[[], int]
    # the remote inference service's figures (detect.backend = "triton"), or None
    inference_service: Callable[[], Mapping[str, Any] | None] = lambda: None


class CamserverCollector:
    """Reads the figures camserver keeps anyway, at scrape time."""

    def __init__(self, sources: MetricSources) -> None:
        self.sources = sources
        self.hub = sources.hub

    def collect(self) -> Iterator[Metric]:
        """The metric families, current values."""
        cams = list(self.hub)
        for name, doc in CAMERA_COUNTERS:
            family = CounterMetricFamily(f"camserver_{name}", doc, labels=["camera"])
            for cam in cams:
                family.add_metric([cam.id], getattr(cam, name))
            yield family
        detected = CounterMetricFamily("camserver_frames_detected", "Camera frames sent to the detector (the motion "
                                       "gate keeps the others from it)", labels=["camera"])
        for cam in cams:
            detected.add_metric([cam.id], self.sources.detected(cam.id))
        yield detected
        connected = GaugeMetricFamily("camserver_camera_connected", "1 while the camera is connected", labels=["camera"])
        viewers = GaugeMetricFamily("camserver_viewers", "Open MJPEG streams of the camera", labels=["camera"])
        for cam in cams:
            connected.add_metric([cam.id], 1 if cam.connected else 0)
            viewers.add_metric([cam.id], self.sources.viewers(cam.id))
        yield connected
        yield viewers
        src = self.sources
        events = CounterMetricFamily("camserver_events", "Events started", labels=["camera", "label"])
        for (camera, label), n in sorted(src.events_started().items()):
            events.add_metric([camera, label], n)
        yield events
        yield CounterMetricFamily("camserver_mqtt_messages_dropped", "MQTT messages dropped from a full queue",
                                  value=src.mqtt_dropped())
        yield CounterMetricFamily("camserver_webhook_failures", "Webhook deliveries that failed after retries",
                                  value=src.webhook_failures())
        service = src.inference_service()
        if service:  # detect.backend = "triton": the remote inference service in use
            url = [service["url"]]
            up = GaugeMetricFamily("camserver_inference_service_up", "1 while the inference service answers",
                                   labels=["url"])
            up.add_metric(url, 1 if service["state"] == "ok" else 0)
            yield up
            for key, name, doc, scale in (
                ("rtt_ms", "rtt_seconds", "Mean round-trip time of the last 200 requests", 0.001),
                ("service_mean_batch", "batch_size", "Mean batch the service formed in its last second (all clients)", 1),
            ):
                if service.get(key) is not None:
                    gauge = GaugeMetricFamily(f"camserver_inference_service_{name}", doc, labels=["url"])
                    gauge.add_metric(url, service[key] * scale)
                    yield gauge
            for key, name, doc in (
                ("failures", "failures", "Requests that failed"),
                ("bad_answers", "bad_answers", "Answers that broke the contract (also counted as failures)"),
                ("frames_refused", "frames_refused", "JPEGs the service refused for its size limits"),
            ):
                counter = CounterMetricFamily(f"camserver_inference_service_{name}", doc, labels=["url"])
                counter.add_metric(url, service.get(key, 0))
                yield counter


class Metrics:
    """camserver's own registry (not the process-global one)."""

    def __init__(self, sources: MetricSources) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(CamserverCollector(sources))
        self.inference_seconds = Histogram(
            "camserver_inference_seconds", "Time of one inference call (a batch)", registry=self.registry,
            buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56),
        )
        self.batch_size = Histogram("camserver_batch_size", "Frames per inference call", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))

    def observe_batch(self, size: int, seconds: float) -> None:
        """One inference call finished."""
        self.inference_seconds.observe(seconds)
        self.batch_size.observe(size)

    def exposition(self) -> tuple[bytes, str]:
        """The text format Prometheus scrapes, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
