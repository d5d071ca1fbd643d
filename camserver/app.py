"""Wires the stages together and owns start-up, supervision and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from .board import PUBLIC_PREFIX as OTA_PREFIX, BoardApi, BoardService
from .board.settings import configured_settings
from .clock import Timeline, timeline_of
from .config import Config, ConfigError
from .config.writeback import ConfigFile
from .detect import Detector
from .detect.base import AsyncDetector
from .detect.backends import detector_factory
from .detect.pool import DetectorPool
from .detect.scheduler import DetectionScheduler, SchedulerPorts
from .detect.tuner import precision_tuner
from .events.engine import EventEngine
from .hub import Camera, CameraHub, HubPorts
from .ingest import CameraIngest
from .integrations.lan import listen_error, reachable_host, startup_lines, warn_if_open
from .integrations.mdns import MdnsAdvertiser
from .integrations.metrics import Metrics, MetricSources
from .integrations.mqtt import MqttPublisher
from .integrations.mute import MuteBoard
from .integrations.notify import Notifier
from .integrations.webhooks import WebhookSender
from .record import Recorder, RecordingIndex
from .record.clips import EventClips
from .record.clipwait import MARGIN_S as CLIP_MARGIN_S, ClipWait
from .record.exporter import EXPORT_SHARE
from .record.kind import RecordingsKind
from .storage import Database, StorageError
from .storage.folder import CountedFolder
from .supervise import Supervisor
from .web import ViewerApp
from .web.connections import ConnectionLimit, connection_cap
from .web.health import server_health
from .web.calibration import CalibrationApi
from .web.configapi import ConfigApi
from .web.liveapply import LiveApply
from .web.mute import MuteApi
from .web.notify import NotifyApi
from .web.recordings import RecordingsApi
from .web.restart import RestartRequest
from .web.session import ViewerAuth
from .web.system import SystemApi, about, configured_shapes, system_facts
from .web.viewer import live_frame

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

    return TritonDetector(d.url, d.triton_model, d.timeout_s, d.triton_inflight, d.max_batch, d.triton_token)


class CamServer:
    """The whole service: camera listener, detection, events, integrations, viewer app. Use `async with`.

    Args:
        config: the validated configuration.
        detector_factory: loads one detector (called once per worker, in its thread); None passes
            frames through undetected. `CamServer.from_config` takes it from the config.
        clock: the server's time (clock.Timeline: steady time for durations, wall-clock labels); a test
            injects a Timeline, or one fake clock that moves both. Default: the real clocks.
    """

    board: BoardService  # built after the lambdas that read these two
    viewer_app: ViewerApp

    def __init__(self, config: Config, detector_factory: Callable[[], Detector] | None,
                 clock: Timeline | Callable[[], float] | None = None, remote: AsyncDetector | None = None,
                 config_file: ConfigFile | None = None) -> None:
        self.config = config
        self.names = config.cameras.names  # [cameras.<id>] name: what the page shows; set live (_shown)
        self.groups = config.groups  # [groups]: the live grid's chips and the groups' overviews; set live
        self.timeline = timeline = timeline_of(clock)
        self.remote = remote  # the shared inference service (detect.backend = "triton"), instead of the pool
        self.supervisor = Supervisor()
        self.database = Database(Path(config.storage.dir), config.storage.max_mb, timeline.wall, config.storage.min_free_mb)
        self.recorder = recorder = self._recorder(config, timeline)
        self.webhooks = WebhookSender(config.webhooks)
        self.mute = MuteBoard(self.database, config.mute.holds)
        self.mqtt = MqttPublisher(config.mqtt, config.events.labels,
                                  motion=lambda camera: not config.passthrough and config.motion_for(camera).enabled,
                                  public_url=config.http.public_url, firmware=lambda camera: self.board.running.get(camera),
                                  mute=self.mute, name=lambda camera: self.names.get(camera))
        self.notifier = Notifier(config.notify, config.http.public_url,
                                 snapshot=lambda event_id: self.events.read_snapshot_file(event_id),
                                 clip_path=self._finished_clip if {config.record.mode, *config.cameras.record_modes.values()}
                                 != {"off"} else None,
                                 muted=self.mute.holding("notify"), name=lambda camera: self.names.get(camera))
        self.events = EventEngine(  # the recorder follows each change first and says which events have a clip
            config.events, config.storage, self.database, clock=timeline.now, wall=timeline.wall,
            listeners=(self.mute.hold("webhooks", self.webhooks.on_change), self.mqtt.on_change, self.notifier.on_change),
            extra_fields=(recorder.index.clip_fields,), on_delete=(recorder.index.delete_clip,), clips=EventClips(recorder))
        self.hub = CameraHub(config.ingest.max_cameras, declared_ids=config.cameras.ids, clock=timeline, ports=HubPorts(
            online=(lambda cam: self.mqtt.camera_online(cam.id, True),),
            offline=(self._camera_offline, lambda cam: recorder.camera_offline(cam.id)),
            forget=(self.mqtt.camera_forgotten, self.events.forget_camera),
            frame=(lambda cam, frame: recorder.on_frame(cam.id, frame.jpeg, frame.steady, frame.wall_time),),
            in_use=lambda camera_id: self.viewer_app.viewers_of(camera_id) > 0), default_id=config.ingest.default_camera_id)
        d = config.detect
        self.pool = DetectorPool(detector_factory, d.workers)
        self.scheduler = DetectionScheduler.from_config(self.hub, self.pool, config, remote, SchedulerPorts(
            watched=lambda camera_id: self.viewer_app.watched(camera_id),
            objects_moving=lambda camera_id: self.events.objects_moving(camera_id), on_detections=self._detections,
            on_held=self._held, on_motion=self._motion, on_batch=lambda n, s: self.metrics.observe_batch(n, s)))
        self.tuner = None if detector_factory is None else precision_tuner(  # detect.precision auto (openvino)
            d, lambda: self.pool.workers, lambda: bool(self.scheduler.lagging(time.monotonic())),
            lambda: [c.raw.frame.jpeg for c in self.hub if c.raw.frame is not None])
        self.mdns = MdnsAdvertiser(config.http.mdns_name, config.http.mdns)
        self._events_started = False
        # board control: settings kept per camera and sent on every hello, firmware updates
        self.board = BoardService(Path(config.storage.dir), configured_settings(config), clock=timeline.wall,
                                  steady=timeline.now)
        self.ingest = CameraIngest(config.ingest, self.hub, on_hello=self._hello, on_status=self.board.on_status)
        board_api = BoardApi(self.board, lambda cid: self.hub.get(cid) is not None, self._send_control,
                             self._camera_base_url, self._camera_status, self._after_pending,
                             max_bytes=self.database.budget.max_bytes, room=self.database.budget.room)
        self.metrics = Metrics(MetricSources(self.hub, lambda camera_id: self.viewer_app.viewers_of(camera_id),
                                             lambda camera_id: self.scheduler.camera_figures(camera_id)["frames_detected"],
                                             lambda: self.events.started, lambda: self.mqtt.dropped,
                                             lambda: self.webhooks.failures,
                                             lambda: self.remote.figures() if self.remote is not None else None))
        self.started_at = time.monotonic()  # uptime is a duration
        auth = ViewerAuth.from_config(config.http, Path(config.storage.dir),
                                      public_prefixes=(OTA_PREFIX,))  # a one-time firmware link is its own secret
        system = SystemApi(self.health, system_facts(config), configured_shapes(config), self.database.budget.used_total)
        recordings = RecordingsApi(self.recorder.clip_file, self.recorder.list_recordings, self.recorder.export,
                                   lambda camera_id: self.hub.get(camera_id) is not None, timeline.wall, timeline.now)
        live = LiveApply(self.notifier, self.recorder, self.recordings_kind, self.database, self.events.apply_shapes,
                         system.reshape, self._shown)
        self.restart = RestartRequest()  # POST /api/restart; run() waits for it
        # the HTTP port's cap: the viewer app tells it which connections proved themselves
        self.http_limit = ConnectionLimit(connection_cap(config.http.max_connections, config.ingest.max_cameras),
                                          config.http.unauthenticated_share)
        self.viewer_app = ViewerApp(
            config=config.http, hub=self.hub, health=self.health, camera_figures=self.camera_figures,
            latest_detections=self.scheduler.latest, annotated_latest=self.scheduler.annotated_latest,
            events=self.events if config.events.enabled else None, exposition=self.metrics.exposition, auth=auth,
            routes=(board_api, NotifyApi(self.notifier, self._latest_snapshot), system, recordings,
                    MuteApi(self.mute, self.hub.get), ConfigApi(config_file, live, live.storage, auth.update), self.restart,
                    CalibrationApi(d, Path(config.storage.dir), self._latest_frames, self.tuner)),
            connections=self.http_limit, groups=lambda: self.groups, names=lambda: self.names,
        )
        self.runner: web.AppRunner | None = None
        self.http_server: asyncio.Server | None = None
        self.ws_port = self.http_port = 0
        self.ready = False
        self.hung_threads = False  # set by stop(): a stalled detector thread is still running
        self._stages = contextlib.AsyncExitStack()  # the stops of the stages entered, run last-in first-out

    def _recorder(self, config: Config, timeline: Timeline) -> Recorder:
        """Recording: every accepted frame goes to it; events start and end clips; it keeps rows beside the events."""
        root = Path(config.storage.dir)
        budget = self.database.budget
        self.clip_wait = ClipWait(config.record.pre_capture_s + config.record.post_capture_s + CLIP_MARGIN_S, budget.soon)
        index = RecordingIndex(self.database, root, grew=self.clip_wait.grew)  # the budget looks soon, waiters look again
        recorder = Recorder(config.record, root, index, self.database, timeline.now, disk=budget,
                            export_max_bytes=int(budget.max_bytes * EXPORT_SHARE), modes=config.cameras.record_modes)
        # the order the budget removes in: exports (made again on request), recordings, then events;
        # firmware images count and stay
        budget.add(recorder.exports)
        self.recordings_kind = RecordingsKind(index, config.record.retain_days)  # record.retain_days: set live
        budget.add(self.recordings_kind)
        budget.add(CountedFolder("firmware", root / "firmware"))
        self.database.attach(lambda conn: index.create())  # a recreated file gets the tables again
        return recorder

    def _finished_clip(self, event_id: str) -> Path | None:
        """The event's clip once it is finished (post-capture recorded), for a notification; on its sender
        thread, woken when the recording index finishes a recording (record/clipwait.py)."""
        return self.clip_wait.finished(event_id, self.recorder.clip_file, self._loop)

    @classmethod
    def from_config(cls, config: Config, clock: Timeline | Callable[[], float] | None = None,
                    config_file: ConfigFile | None = None) -> CamServer:
        """The server with the detector the config asks for; `config_file`: where it came from (/api/config)."""
        return cls(config, default_detector_factory(config), clock, remote_detector(config), config_file)

    def _latest_frames(self) -> list[tuple[str, int, bytes]]:
        """Each camera's latest frame as it came (id, sequence number, JPEG), for INT8 calibration."""
        return [(c.id, f.seq, f.jpeg) for c in self.hub if (f := c.raw.frame) is not None]

    def health(self) -> dict[str, Any]:
        """What /healthz reports."""
        return server_health(self)

    def camera_figures(self, cam: Camera) -> dict[str, Any]:
        """What /api/cameras shows of a camera, from every stage but the viewer's own counts."""
        return {**cam.summary(), "name": self.names.get(cam.id, cam.id), **self.scheduler.camera_figures(cam.id),
                "closes": self.ingest.closes_of(cam.id),
                "settings_dropped": self.board.dropped_reported.get(cam.id, 0),
                "recording": self.recorder.camera_stats(cam.id), **self.mute.state(cam.id),
                "detector": self.scheduler.state, "detection": self.scheduler.figures()}

    def _shown(self, config: Config) -> None:
        """New camera names or groups, saved from the page (PATCH /api/config); Home Assistant hears of new names."""
        renamed = {c for c in set(self.names) | set(config.cameras.names) if self.names.get(c) != config.cameras.names.get(c)}
        self.names, self.groups = config.cameras.names, config.groups
        for camera in sorted(renamed):
            self.mqtt.camera_hello(camera, renamed=True)

    async def _send_control(self, camera_id: str, message: dict[str, Any]) -> bool:
        cam = self.hub.get(camera_id)
        return cam is not None and await self.ingest.send_control(cam, message)

    async def _after_pending(self, camera_id: str, callback: Callable[[], None]) -> bool:
        cam = self.hub.get(camera_id)
        return cam is not None and await self.ingest.after_pending(cam, callback)

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
            self.events.on_frame(cam.id, frame.steady, frame.jpeg, size, detections, frame.wall_time)

    def _held(self, cam: Camera, when: float) -> None:
        if self._events_started:
            self.events.on_held(cam.id, when)

    def _hello(self, camera_id: str, hello: dict[str, Any] | None) -> dict[str, Any] | None:
        """A camera's hello: the board's settings to send back; MQTT's device shows the firmware it names."""
        message = self.board.on_hello(camera_id, hello)
        self.mqtt.camera_hello(camera_id)
        return message

    def _motion(self, cam: Camera, on: bool, when: float) -> None:
        """A camera's motion turned on or (after motion.mqtt_off_delay_s) off: MQTT, and motion recording."""
        self.mqtt.camera_motion(cam.id, on)
        self.recorder.motion(cam.id, on, when)

    def _camera_offline(self, cam: Any) -> None:
        self.mqtt.camera_online(cam.id, False)
        if self._events_started and self.ready:  # at shutdown, events end as "server stop" instead
            self.events.camera_offline(cam.id)

    async def start(self) -> None:
        """Enter every stage in order; each one entered pushes its stop, so stop() undoes them in reverse.

        Raises:
            ConfigError: storage.dir cannot be created or written.
            ModelLoadError, StartupError: the model or a port.
        """
        self._loop = asyncio.get_running_loop()
        try:
            await self._enter(self._stages.push_async_callback)
        except BaseException:
            await self.stop()  # what was entered is stopped, in reverse
            raise
        ingest, http = self.config.ingest, self.config.http
        warn_if_open(ingest, http)
        camera_host, page_host = await asyncio.to_thread(lambda: (reachable_host(ingest.host), reachable_host(http.host)))
        for line in startup_lines(camera_host, self.ws_port, page_host, self.http_port, self.config.cameras.ids,
                                  self.mdns.host if http.mdns else None):
            log.info("%s", line)
        if about(self.config.detect.model, self.started_at)["model_random_weights"]:
            log.warning("the model %s has random weights: its boxes and events are meaningless", self.config.detect.model)

    async def _enter(self, push: Callable[..., Any]) -> None:
        """Start the stages; `push(_stop_step, name, stop)` right after each one started (a stop never stops the rest)."""
        spawn, config = self.supervisor.spawn, self.config
        push(_stop_step, "tasks", self.supervisor.stop)  # last: whatever task is left
        try:
            await self.database.open(spawn)  # and its housekeeping: the file checked, the size budget kept
            push(_stop_step, "storage", self.database.close)
            # the senders before the events, so they stop after them: the "server stop" ends reach all three
            for camera_id in config.cameras.ids:
                self.mqtt.camera_online(camera_id, False)
            self.mqtt.start(spawn)
            push(_stop_step, "mqtt", self.mqtt.stop)
            await self.notifier.start(spawn)
            push(_stop_step, "notifications", self.notifier.stop)
            await self.webhooks.start(spawn)
            push(_stop_step, "webhooks", self.webhooks.stop)
            if config.events.enabled:
                await self.events.start(spawn)
                self._events_started = True
                push(_stop_step, "events", self._stop_events)
                self.mqtt.objects_gone(self.events.closed_at_start)  # a crash left them counted
            await self.mute.start(spawn)  # the mutes kept before a restart
            push(_stop_step, "mute", self.mute.stop)  # before the events database closes
            await self.board.start(self.database)
            push(_stop_step, "board", self.board.stop)
            await self.recorder.start(spawn)
            push(_stop_step, "recording", self.recorder.stop)  # before the database: it writes its last rows
            self.timeline.not_before(self.recorder.latest_steady)  # recorded order goes on across a restart
        except (StorageError, OSError, sqlite3.Error) as exc:
            raise ConfigError("storage.dir", config.storage.dir, f"cannot be created or written ({exc})") from None
        if self.remote is not None:  # never fails for a service that is away: camserver streams without boxes
            await self.remote.start(spawn)
            push(_stop_step, "inference service", self.remote.stop)
        else:
            log.info("loading model %s", config.detect.model)
            push(_stop_step, "detector workers", self.pool.stop)  # a load that failed half-way leaves workers
            await self.pool.start()
        spawn("detect", self.scheduler.run(), "detection-scheduler")
        spawn("clock", self.timeline.watch(), "clock-watch")
        if self.tuner is not None:
            spawn("detect", self.tuner.run(), "precision-tuning")
        push(_stop_step, "detect", lambda: self.supervisor.stop("detect"))
        http, ingest = config.http, config.ingest
        push(_stop_step, "viewers", self._stop_viewers)
        try:
            self.runner = web.AppRunner(self.viewer_app.build(), handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                                        keepalive_timeout=http.request_timeout_s)  # the first request's headers too
            await self.runner.setup()
            assert self.runner.server is not None  # made by setup()
            self.http_server = await asyncio.get_running_loop().create_server(
                self.http_limit.factory(self.runner.server), http.host, http.port, reuse_address=True)
        except OSError as exc:
            raise StartupError(listen_error(exc, "viewer", http.host, http.port, "--http-port", "http.port")) from None
        self.http_port = self.http_server.sockets[0].getsockname()[1]
        try:
            self.ws_port = await self.ingest.start()
        except OSError as exc:
            raise StartupError(listen_error(exc, "camera", ingest.host, ingest.port, "--ws-port", "ingest.port")) from None
        push(_stop_step, "cameras", self.ingest.stop)
        self.ready = True
        self.mdns.start(spawn, http.host, self.http_port, ingest.host, self.ws_port)
        push(_stop_step, "mdns", self.mdns.stop)  # first: the LAN hears the services go before the ports close

    async def stop(self) -> None:
        """Stop every stage entered, the last one first: close cameras with 1001, end MJPEG responses, ...

        Each step runs even when an earlier one fails (the failure is logged), so one broken stage
        never leaves another one running or the broker showing the server online.
        """
        self.ready = False
        self.supervisor.stopping = True
        await self._stages.aclose()
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


async def _stop_step(name: str, stop: Callable[[], Awaitable[None]]) -> None:
    """One stage's stop; a failure is logged and the stages after it stop all the same."""
    try:
        await stop()
    except Exception:
        log.error("stopping %s failed; going on with the rest", name, exc_info=True)
