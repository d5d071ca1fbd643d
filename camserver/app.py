"""Wires the stages together and owns start-up and graceful shutdown."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import time
from contextlib import suppress
from typing import Any, Callable

from aiohttp import web

from .config import Config, ConfigError
from .detect import Detector
from .detect.base import AsyncDetector
from .detect.backends import detector_factory
from .detect.pool import DetectorPool
from .detect.scheduler import DetectionScheduler
from .events.engine import EventEngine, StorageError
from .hub import CameraHub
from .integrations.metrics import Metrics
from .integrations.mqtt import MqttPublisher
from .integrations.webhooks import WebhookSender
from .ingest import CameraIngest
from .web import ViewerApp

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 3.0  # open responses are ended by then; the rest is cut


class StartupError(Exception):
    """The server could not start (port in use, ...); the text says why."""


def default_detector_factory(config: Config) -> Callable[[], Detector] | None:
    """The ultralytics detector the config asks for, or None for pass-through (and for a remote backend)."""
    if config.passthrough or config.detect.backend == "triton":
        return None
    return detector_factory(config.detect)


def remote_detector(config: Config) -> AsyncDetector | None:
    """The remote detector `detect.backend = "triton"` asks for, or None."""
    d = config.detect
    if config.passthrough or d.backend != "triton":
        return None
    from .detect.backends.triton import TritonDetector

    return TritonDetector(d.url, d.triton_model, d.timeout_s, d.triton_inflight, d.max_batch)


class CamServer:
    """The whole service: camera listener, detection, viewer app. Use `async with`."""

    def __init__(
        self,
        config: Config,
        detector_factory: Callable[[], Detector] | None | str = "config",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.factory = default_detector_factory(config) if detector_factory == "config" else detector_factory
        self.remote = remote_detector(config) if detector_factory == "config" else None
        self.hub = CameraHub(config.ingest.max_cameras, config.cameras.ids, config.ingest.default_camera_id, clock)
        self.events = EventEngine(config, clock)
        d = config.detect
        self.pool = DetectorPool(self.factory, d.workers)  # type: ignore[arg-type]
        self.scheduler = DetectionScheduler(self.hub, self.pool, d.stall_timeout_s, d.jpeg_quality, self.remote)
        self.scheduler.on_detections = self._detections
        self.hub.on_offline = self._camera_offline
        self.webhooks = WebhookSender(config.webhooks)
        self.events.listeners.append(self.webhooks.on_change)
        self.mqtt = MqttPublisher(config.mqtt, config.events)
        self.events.listeners.append(self.mqtt.on_change)
        self.hub.on_online = lambda cam: self.mqtt.camera_online(cam.id, True)
        self.hub.on_forget = self.mqtt.camera_forgotten
        self.metrics = Metrics(self.hub, self._metric_extras)
        self.scheduler.on_batch = self.metrics.observe_batch
        self._events_started = False
        self.ingest = CameraIngest(config.ingest, self.hub)
        self.viewer_app = ViewerApp(
            config, self.hub, self.health, self.ingest.send_control, self.scheduler.annotated_latest,
            self.events if config.events.enabled else None, self.metrics,
        )
        self.runner: web.AppRunner | None = None
        self.ws_port = 0
        self.http_port = 0
        self.ready = False
        self._scheduler_task: asyncio.Task[None] | None = None

    def health(self) -> dict[str, Any]:
        """What /healthz reports."""
        detector = self.scheduler.state
        return {
            "status": ("ok" if detector == "ok" else "degraded") if self.ready else "starting",
            "detector": detector,
            "detector_reason": self.scheduler.reason,
            "detector_stalls": self.pool.stalls,
            "model": self.config.detect.model,
            "events": self.events.health(),
            "mqtt": self.mqtt.state,  # never makes the server unhealthy
            "detection": self.scheduler.figures(),
            "tasks": len(asyncio.all_tasks()),
            "viewers": self.viewer_app.viewers_total,
            "viewers_refused": self.viewer_app.viewers_refused,
            "camera_auth_failures": self.ingest.auth_failures,
            "cameras": len(self.hub.cameras),
            "cameras_connected": sum(1 for c in self.hub if c.connected),
        }

    def _metric_extras(self) -> dict[str, Any]:
        return {"events": self.events.started, "webhook_failures": self.webhooks.failures,
                "mqtt_dropped": self.mqtt.dropped,
                "inference_service": self.remote.figures() if self.remote is not None else None}

    def _detections(self, cam: Any, frame: Any, size: tuple[int, int], detections: list[Any]) -> None:
        if self._events_started:
            self.events.on_frame(cam.id, frame.wall_time, frame.jpeg, size, detections)

    def _camera_offline(self, cam: Any) -> None:
        self.mqtt.camera_online(cam.id, False)
        if self._events_started and self.ready:  # at shutdown, events end as "server stop" instead
            self.events.camera_offline(cam.id)

    async def start(self) -> None:
        """Open the event store, load the model, then open both listeners.

        Raises:
            ConfigError: storage.dir cannot be created or written.
            ModelLoadError, StartupError: the model or a port.
        """
        if self.config.events.enabled:
            try:
                await self.events.start()
            except StorageError as exc:
                raise ConfigError("storage.dir", self.config.storage.dir, f"cannot be created or written ({exc})") from None
            self._events_started = True
        try:
            if self.remote is not None:  # never fails for a service that is away: camserver streams without boxes
                await self.remote.start()
            else:
                log.info("loading model %s", self.config.detect.model)
                await self.pool.start()
        except BaseException:
            await self.pool.stop()
            await self._stop_events()
            raise
        self._scheduler_task = asyncio.create_task(self.scheduler.run(), name="detection-scheduler")
        await self.webhooks.start()
        for camera_id in self.config.cameras.ids:
            self.mqtt.camera_online(camera_id, False)
        self.mqtt.start()
        try:
            self.ws_port = await self.ingest.start()
            self.runner = web.AppRunner(self.viewer_app.build(), handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
            await self.runner.setup()
            site = web.TCPSite(self.runner, self.config.http.host, self.config.http.port)
            await site.start()
        except OSError as exc:
            await self.stop()
            raise StartupError(f"cannot listen: {exc.strerror or exc}") from None
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ready = True
        self._warn_if_open()
        host = self.config.http.host
        log.info("cameras connect to ws://%s:%d/ws/<camera_id>", self.config.ingest.host, self.ws_port)
        log.info("viewers open http://%s:%d/ (MJPEG at /stream.mjpg)", host, self.http_port)

    def _warn_if_open(self) -> None:
        ingest, http = self.config.ingest, self.config.http
        for side, host, protected, key, risk in (
            ("camera", ingest.host, bool(ingest.token), "ingest.token", "publish frames as any camera"),
            ("viewer", http.host, bool(http.token or http.users), "http.token or http.users", "watch every camera"),
        ):
            if not protected and not _is_loopback(host):
                log.warning("the %s port listens on %s with no token: anyone who reaches it can %s; set %s",
                            side, host, risk, key)

    async def stop(self) -> None:
        """Stop accepting, close cameras with 1001, end MJPEG responses, stop the workers."""
        self.ready = False
        await self.ingest.stop()
        self.hub.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self._scheduler_task is not None:
            self._scheduler_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._scheduler_task
        await self.pool.stop()
        if self.remote is not None:
            await self.remote.stop()
        await self._stop_events()
        await self.webhooks.stop()
        await self.mqtt.stop()

    async def _stop_events(self) -> None:
        if self._events_started:
            self._events_started = False
            await self.events.stop()

    async def __aenter__(self) -> CamServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable


async def run(config: Config) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with CamServer(config):
        await stop.wait()
        log.info("shutting down")
    log.info("stopped")
