"""Wires the stages together and owns start-up, supervision and graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from .board import PUBLIC_PREFIX as OTA_PREFIX, BoardApi, BoardService
from .config import Config, ConfigError
from .detect import Detector, ModelLoadError
from .detect.backends import detector_factory
from .detect.fallback import fallback_warning, offline_fallback
from .detect.pool import DetectorPool
from .detect.scheduler import DetectionScheduler
from .events.engine import EventEngine
from .hub import Camera, CameraHub
from .ingest import CameraIngest
from .integrations.lan import is_loopback, reachable_host, startup_lines
from .integrations.mdns import MdnsAdvertiser
from .integrations.metrics import Metrics, MetricSources
from .integrations.mqtt import MqttPublisher
from .integrations.notify import Notifier
from .integrations.webhooks import WebhookSender
from .storage import Database, StorageError
from .supervise import StageFailed, Supervisor, cancel_and_wait
from .web import ViewerApp
from .web.connections import ConnectionLimit, connection_cap, raise_descriptor_limit
from .web.notify import NotifyApi
from .web.session import ViewerAuth
from .web.system import SystemApi, about, configured_shapes, system_facts
from .web.viewer import live_frame

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 3.0  # open responses are ended by then; the rest is cut


class StartupError(Exception):
    """The server could not start (port in use, ...); the text says why."""


def default_detector_factory(config: Config) -> Callable[[], Detector] | None:
    """The ultralytics detector the config asks for, or None for pass-through."""
    if config.passthrough:
        return None
    return detector_factory(config.detect)


class CamServer:
    """The whole service: camera listener, detection, events, integrations, viewer app. Use `async with`.

    Args:
        config: the validated configuration.
        detector_factory: loads one detector (called once per worker, in its thread); None passes
            frames through undetected. `CamServer.from_config` takes it from the config.
        clock: wall-clock time of frames and events (tests inject one).
    """

    def __init__(self, config: Config, detector_factory: Callable[[], Detector] | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.supervisor = Supervisor()
        self.hub = CameraHub(config.ingest.max_cameras, config.cameras.ids, config.ingest.default_camera_id, clock)
        self.database = Database(Path(config.storage.dir))
        self.events = EventEngine(config.events, config.storage, self.database, clock)
        d = config.detect
        self.pool = DetectorPool(detector_factory, d.workers)
        self.scheduler = DetectionScheduler(self.hub, self.pool, d.stall_timeout_s, d.jpeg_quality)
        self.scheduler.on_detections = self._detections
        self.hub.on_offline.append(self._camera_offline)
        self.webhooks = WebhookSender(config.webhooks)
        self.events.listeners.append(self.webhooks.on_change)
        self.mqtt = MqttPublisher(config.mqtt, config.events.labels)
        self.events.listeners.append(self.mqtt.on_change)
        self.hub.on_online.append(lambda cam: self.mqtt.camera_online(cam.id, True))
        self.hub.on_forget.append(self.mqtt.camera_forgotten)
        self.hub.on_forget.append(self.events.forget_camera)
        self.mdns = MdnsAdvertiser(config.http.mdns_name, config.http.mdns)
        self.notifier = Notifier(config.notify, config.http.public_url, snapshot=self.events.read_snapshot_file)
        self.events.listeners.append(self.notifier.on_change)
        self._events_started = False
        self.ingest = CameraIngest(config.ingest, self.hub)
        # board control: settings kept per camera and sent on every hello, firmware updates
        self.board = BoardService(Path(config.storage.dir), clock=clock)
        self.ingest.on_hello = self.board.on_hello
        self.ingest.on_status = self.board.on_status
        board_api = BoardApi(self.board, lambda cid: self.hub.get(cid) is not None, self._send_control,
                             self._camera_base_url, self._camera_status)
        self.metrics = Metrics(MetricSources(self.hub, lambda camera_id: self.viewer_app.viewers_of(camera_id),
                                             lambda: self.events.started, lambda: self.mqtt.dropped,
                                             lambda: self.webhooks.failures))
        self.scheduler.on_batch = self.metrics.observe_batch
        self.started_at = time.time()
        auth = ViewerAuth(config.http.token, dict(config.http.users), Path(config.storage.dir),
                          public_prefixes=(OTA_PREFIX,))  # a one-time firmware link is its own secret
        system = SystemApi(self.health, system_facts(config), configured_shapes(config),
                           self.events.store.used_bytes if config.events.enabled else None)
        self.viewer_app = ViewerApp(
            config.http, self.hub, self.health, self.ingest.send_control, self.camera_figures, self.scheduler.latest,
            self.scheduler.annotated_latest, self.events if config.events.enabled else None, self.metrics.exposition,
            auth, (board_api, NotifyApi(self.notifier, self._latest_snapshot), system),
        )
        self.scheduler.watched = self.viewer_app.watched
        self.hub.in_use = lambda camera_id: self.viewer_app.viewers_of(camera_id) > 0
        self.runner: web.AppRunner | None = None
        self.http_server: asyncio.Server | None = None
        self.http_limit: ConnectionLimit | None = None
        self.ws_port = 0
        self.http_port = 0
        self.ready = False
        self.hung_threads = False  # set by stop(): a stalled detector thread is still running

    @classmethod
    def from_config(cls, config: Config, clock: Callable[[], float] = time.time) -> CamServer:
        """The server with the detector the config asks for (`detect.model`, `none` passes through)."""
        return cls(config, default_detector_factory(config), clock)

    def health(self) -> dict[str, Any]:
        """What /healthz reports."""
        detector = self.scheduler.state
        lagging = self.scheduler.lagging(time.monotonic())
        failed = self.supervisor.failed
        if failed is not None:
            status = "failed"
        elif not self.ready:
            status = "starting"
        else:
            status = "ok" if detector == "ok" and not lagging else "degraded"
        health: dict[str, Any] = {"status": status}
        if failed is not None:
            health["failed_stage"] = failed
        if lagging:
            health["lagging_cameras"] = lagging  # camera -> why its detection has not advanced
        health.update({
            "detector": detector,
            "detector_stalls": self.pool.stalls,
            "model": Path(self.config.detect.model).name,  # not the path: /healthz needs no token
            **about(self.config.detect.model, self.started_at),
            "events": self.events.health(),
            "mqtt": self.mqtt.state,  # never makes the server unhealthy
            "mqtt_error": self.mqtt.problem or None,
            "mdns": self.mdns.health(),  # never makes the server unhealthy
            "notify": self.notifier.health(),  # redacted URLs; never makes the server unhealthy
            "webhooks": {"endpoints": len(self.config.webhooks), "failures": self.webhooks.failures},
            "detection": self.scheduler.figures(),
            "tasks": len(asyncio.all_tasks()),
            "viewers": self.viewer_app.viewers_total,
            "viewers_refused": self.viewer_app.viewers_refused,
            "http_connections": self.http_limit.open if self.http_limit else 0,
            "http_connections_refused": self.http_limit.refused if self.http_limit else 0,
            "camera_auth_failures": self.ingest.auth_failures,
            "cameras": len(self.hub.cameras),
            "cameras_connected": sum(1 for c in self.hub if c.connected),
        })
        return health

    def camera_figures(self, cam: Camera) -> dict[str, Any]:
        """What /api/cameras shows of a camera, from every stage but the viewer's own counts."""
        return {**cam.summary(), **self.scheduler.camera_figures(cam.id), "closes": self.ingest.closes_of(cam.id),
                "detector": self.scheduler.state, "detection": self.scheduler.figures()}

    async def _send_control(self, camera_id: str, message: dict[str, Any]) -> bool:
        cam = self.hub.get(camera_id)
        return cam is not None and await self.ingest.send_control(cam, message)

    def _camera_status(self, camera_id: str) -> dict[str, Any] | None:
        cam = self.hub.get(camera_id)
        return cam.status if cam is not None else None

    def _camera_base_url(self, camera_id: str) -> str | None:
        """http://<the address the camera reached us on>:<http port>, for its update download."""
        cam = self.hub.get(camera_id)
        if cam is None or cam.connection is None or not self.http_port:
            return None
        host = cam.connection.local_address[0]
        return f"http://[{host}]:{self.http_port}" if ":" in host else f"http://{host}:{self.http_port}"

    async def _latest_snapshot(self, camera_id: str | None) -> tuple[str, bytes | None] | None:
        """A camera's latest annotated JPEG (None while it has none), for the test notification."""
        cam = self.hub.get(camera_id) if camera_id else self.hub.default_camera()
        if cam is None:
            return None
        await self.scheduler.annotated_latest(cam)
        frame = live_frame(cam, cam.annotated)
        return cam.id, frame.jpeg if frame is not None else None

    def _detections(self, cam: Any, frame: Any, size: tuple[int, int], detections: list[Any]) -> None:
        if self._events_started:
            self.events.on_frame(cam.id, frame.wall_time, frame.jpeg, size, detections)

    def _camera_offline(self, cam: Any) -> None:
        self.mqtt.camera_online(cam.id, False)
        if self._events_started and self.ready:  # at shutdown, events end as "server stop" instead
            self.events.camera_offline(cam.id)

    async def start(self) -> None:
        """Open the storage and the event store, load the model, then open both listeners.

        Raises:
            ConfigError: storage.dir cannot be created or written.
            ModelLoadError, StartupError: the model or a port.
        """
        spawn = self.supervisor.spawn
        try:
            await self.database.open()
            if self.config.events.enabled:
                await self.events.start(spawn)
                self._events_started = True
            await self.board.start(self.database)
        except (StorageError, OSError, sqlite3.Error) as exc:
            await self.stop()
            raise ConfigError("storage.dir", self.config.storage.dir, f"cannot be created or written ({exc})") from None
        log.info("loading model %s", self.config.detect.model)
        try:
            await self.pool.start()
        except BaseException:
            await self.stop()
            raise
        spawn("detect", self.scheduler.run(), "detection-scheduler")
        await self.webhooks.start(spawn)
        await self.notifier.start(spawn)
        for camera_id in self.config.cameras.ids:
            self.mqtt.camera_online(camera_id, False)
        self.mqtt.start(spawn)
        try:
            self.ws_port = await self.ingest.start()
            app = self.viewer_app.build()
            http = self.config.http
            # keepalive_timeout also bounds the wait for a request's headers, the first one included
            self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                                        keepalive_timeout=http.request_timeout_s)
            await self.runner.setup()
            self.http_limit = ConnectionLimit(connection_cap(http.max_connections, self.config.ingest.max_cameras))
            self.http_server = await asyncio.get_running_loop().create_server(
                self.http_limit.factory(self.runner.server), http.host, http.port, reuse_address=True)
        except OSError as exc:
            await self.stop()
            raise StartupError(f"cannot listen: {exc.strerror or exc}") from None
        self.http_port = self.http_server.sockets[0].getsockname()[1]
        self.ready = True
        self._warn_if_open()
        ingest, http = self.config.ingest, self.config.http
        self.mdns.start(spawn, http.host, self.http_port, ingest.host, self.ws_port)
        camera_host, page_host = await asyncio.to_thread(lambda: (reachable_host(ingest.host), reachable_host(http.host)))
        for line in startup_lines(camera_host, self.ws_port, page_host, self.http_port, self.config.cameras.ids,
                                  self.mdns.host if http.mdns else None):
            log.info("%s", line)
        if about(self.config.detect.model, self.started_at)["model_random_weights"]:
            log.warning("the model %s has random weights: its boxes and events are meaningless", self.config.detect.model)

    def _warn_if_open(self) -> None:
        ingest, http = self.config.ingest, self.config.http
        for side, host, protected, key, risk in (
            ("camera", ingest.host, bool(ingest.token), "ingest.token", "publish frames as any camera"),
            ("viewer", http.host, bool(http.token or http.users), "http.token or http.users", "watch every camera"),
        ):
            if not protected and not is_loopback(host):
                log.warning("the %s port listens on %s with no token: anyone who reaches it can %s; set %s",
                            side, host, risk, key)

    async def stop(self) -> None:
        """Stop accepting, close cameras with 1001, end MJPEG responses, stop every stage.

        Each step runs even when an earlier one fails (the failure is logged), so one broken stage
        never leaves another one running or the broker showing the server online.
        """
        self.ready = False
        self.supervisor.stopping = True
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("mdns", self.mdns.stop),  # first: the LAN hears the services go before the ports close
            ("cameras", self.ingest.stop),
            ("viewers", self._stop_viewers),
            ("detect", lambda: self.supervisor.stop("detect")),
            ("detector workers", self.pool.stop),
            ("board", self.board.stop),  # before the events database closes
            ("events", self._stop_events),
            ("storage", self.database.close),
            ("webhooks", self.webhooks.stop),
            ("notifications", self.notifier.stop),
            ("mqtt", self.mqtt.stop),
            ("tasks", self.supervisor.stop),
        ]
        for name, step in steps:
            try:
                await step()
            except Exception:
                log.error("stopping %s failed; going on with the rest", name, exc_info=True)
        self.hung_threads = self.pool.hung_threads_alive()
        if self.hung_threads:
            log.warning("a stalled detector thread is still running; it cannot be stopped from Python")

    async def _stop_viewers(self) -> None:
        self.hub.close()
        if self.http_server is not None:
            self.http_server.close()  # no new connections; runner.cleanup() ends the open ones
        if self.runner is not None:
            await self.runner.cleanup()

    async def _stop_events(self) -> None:
        if self._events_started:
            self._events_started = False
            await self.events.stop()

    async def __aenter__(self) -> CamServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@dataclass(frozen=True)
class RunResult:
    """How a run ended, for the exit code."""

    hung_threads: bool  # a stalled detector thread still runs: the process must not wait for it


Companion = Callable[[CamServer], Awaitable[None]]


def write_ports(path: Path, ws_port: int, http_port: int) -> None:
    """{"ws": ..., "http": ...} written atomically: a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"ws": ws_port, "http": http_port}))
    os.replace(tmp, path)


async def start_server(config: Config, model_fallback: bool = False) -> CamServer:
    """A started server; with `model_fallback`, yolo11n.yaml when the default yolo11n.pt cannot download.

    Raises:
        ConfigError, ModelLoadError, StartupError: as CamServer.start.
    """
    server = CamServer.from_config(config)
    try:
        await server.start()
    except ModelLoadError as exc:
        fallback = offline_fallback(config.detect) if model_fallback else None
        if fallback is None:
            raise
        log.warning("%s", fallback_warning(str(exc)))
        server = CamServer.from_config(dataclasses.replace(config, detect=fallback))
        await server.start()
    return server


async def run(config: Config, ports_file: Path | None = None, companion: Companion | None = None, *,
              model_fallback: bool = False) -> RunResult:
    """Serve until SIGINT or SIGTERM (or a stage dies), then shut down gracefully.

    Args:
        config: the validated configuration.
        ports_file: where to write the bound ports once both listeners are up.
        companion: runs beside the server once it is up, and is cancelled first at shutdown
            (the demo's simulated camera).
        model_fallback: the model is the default one, not named by the user: if yolo11n.pt cannot be
            downloaded, run yolo11n.yaml (random weights) and say so instead of failing.

    Raises:
        StageFailed: a stage's long-lived task died; the server stopped.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: a clean stop too, nothing reloads
        loop.add_signal_handler(sig, stop.set)
    raise_descriptor_limit()
    server = await start_server(config, model_fallback)
    try:
        if ports_file is not None:
            write_ports(ports_file, server.ws_port, server.http_port)
        extra = asyncio.create_task(companion(server), name="companion") if companion else None
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(server.supervisor.failure.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(extra, *waiters)
        log.info("shutting down")
    finally:
        await server.stop()
    failed = server.supervisor.failed
    if failed is not None:
        raise StageFailed(failed)
    log.info("stopped")
    return RunResult(server.hung_threads)
