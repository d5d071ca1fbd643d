"""Wires the events stage: every processed frame's detections -> tracker -> rules -> store and feed.

Tracking, rules, database and file work run on the database's thread, in the order frames were
processed, never on the event loop. The thread's backlog is bounded: if it falls behind (a slow
disk), frames are skipped for events and counted, and detection and streams go on. A storage
failure is counted and logged, never raised into the stream: live events go on without history.
Retention is the storage budget's (storage/budget.py); the store is its "events" kind.
Time is the server's steady time (clock.Timeline): a frame brings its wall-clock label, the rest
of an event's labels are measured from it, so a clock step never ends an event before it starts.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import Counter, deque
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from ..clock import steady
from ..config import EventsConfig, StorageConfig
from ..detect.base import Detection
from ..logsafe import ThrottledLog
from ..storage import Database
from ..supervise import Spawn, cancel_and_wait
from .feed import EventFeed
from .rules import CameraRules, Change
from .shape import Clips, history_record, no_clip, public_change
from .store import EventStore
from .zones import by_camera

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_PENDING = 256  # frames waiting for the events thread before new ones are skipped
SWEEP_EVERY_S = 1.0  # ends events of cameras that stopped sending frames but stay connected


class EventEngine:
    """Events for every camera: rules per camera, one store, one live feed."""

    def __init__(self, config: EventsConfig, storage: StorageConfig, database: Database, *,
                 clock: Callable[[], float] = steady, wall: Callable[[], float] | None = None,
                 listeners: Sequence[Callable[[Change], None]] = (),
                 extra_fields: Sequence[Callable[[list[str]], dict[str, dict[str, Any]]]] = (),
                 on_delete: Sequence[Callable[[str], Any]] = (), clips: Clips | None = None) -> None:
        self.config = config
        self.database = database
        self.clock = clock  # steady time (sweeps, cameras going away, stop); labels come with the frames
        # an event's kept_at is keep-time less how long ago (by the wall clock; default: `clock`) it started
        self.store = EventStore(Path(storage.dir), storage.retain_days, database.budget.keep_clock.now, wall or clock)
        self.feed = EventFeed()
        self.zones = by_camera(self.config.zones)
        self.rules: dict[str, CameraRules] = {}
        self.pending = 0
        # processed frames, and held ones (jpeg None: the gate kept them from the detector)
        self._inbox: deque[tuple[str, float, bytes | None, tuple[int, int], list[Detection], float | None]] = deque()
        self._draining = False  # a drain job is queued or running
        self.skipped = 0
        self.write_errors = 0
        self.events_total = 0
        self.started: Counter[tuple[str, str]] = Counter()  # events by (camera, label), for /metrics
        # called on the loop with every change, announced or not (integrations: MQTT, webhooks)
        self.listeners = list(listeners)
        self.clips = clips  # the recorder: follows each change first, and says which events have a clip
        # on the events thread: fields other stages add to the event JSON (event ids -> id -> fields),
        # and what they forget when an event is deleted
        self.extra_fields = list(extra_fields)
        self.on_delete = list(on_delete)
        self._write_log = ThrottledLog(log, interval_s=60.0)
        self._tasks: set[asyncio.Future[Any]] = set()
        self._housekeeping_task: asyncio.Task[None] | None = None
        self.closed_at_start: list[tuple[str, str]] = []  # (camera, label) of the events start() closed

    async def start(self, spawn: Spawn) -> None:
        """Open the store (closing events a crash left open) and start the sweep of quiet cameras. Raises StorageError."""
        closed = await self.database.use(self.store.open, self.clock())
        self.closed_at_start = [(r["camera"], r["label"]) for r in closed]  # MQTT says their counts are 0
        if closed:
            log.warning("closed %d event(s) left open by the last run (end_reason: server restart)", len(closed))
        self.database.attach(self._reattach)
        self.database.budget.add(self.store)  # its oldest events go first past retain_days or max_mb
        self._housekeeping_task = spawn("events", self._housekeeping(), "event-housekeeping")

    async def stop(self) -> None:
        """End every open event as "server stop", store them, close the store."""
        await cancel_and_wait(self._housekeeping_task)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        now = self.clock()
        changes = await self._run(self._end_all, now, "server stop")
        self._announce(changes)
        self.feed.wake()

    # --- history reads and deletes, for the API (on the events thread, so never beside a write) ---

    async def query(self, filters: dict[str, Any], limit: int, before_key: tuple[float, str] | None) -> list[dict[str, Any]]:
        """Stored events newest first matching `filters`; see EventStore.query."""
        return await self._run(lambda: self._with_extra(self.store.query(filters, limit, before_key)))

    def _with_extra(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records in the public shape, with the fields other stages keep for events (a clip), on the events thread."""
        for fields in self.extra_fields:
            extra = fields([r["id"] for r in records])
            for record in records:
                record.update(extra.get(record["id"], {}))
        return [history_record(record) for record in records]

    async def facets(self) -> dict[str, list[str]]:
        """The distinct cameras, labels and zones in the history; see EventStore.facets."""
        return await self._run(self.store.facets)

    async def get(self, event_id: str) -> dict[str, Any] | None:
        """One stored event, or None."""

        def get() -> dict[str, Any] | None:
            record = self.store.get(event_id)
            return None if record is None else self._with_extra([record])[0]

        return await self._run(get)

    async def delete(self, event_id: str) -> bool:
        """Remove an event, its snapshot, what other stages keep for it (a clip) and, if it is still open, the
        event itself; False if there was none.

        An open event ends for the listeners (MQTT counts, webhooks: `end`, end_reason "deleted"),
        so none is left thinking its object is still there; that end is not stored. The live feed
        gets a `delete` with the id, for ended events too, so open pages drop it.
        """
        camera, ended = await self._run(self._delete, event_id, self.clock())
        if camera is None:
            return False
        self.feed.publish("delete", {"type": "delete", "id": event_id, "camera": camera})
        self._announce(ended, feed=False)
        return True

    async def snapshot(self, event_id: str) -> bytes | None:
        """The JPEG of an event's best frame, or None."""
        return await self._run(self.store.read_snapshot, event_id)

    def read_snapshot_file(self, event_id: str) -> bytes | None:
        """The snapshot JPEG of an event, read on the calling thread (files only: any thread may)."""
        return self.store.read_snapshot(event_id)

    @property
    def idle(self) -> bool:
        """Nothing waiting for or running on the events thread."""
        return self.pending == 0 and not self._inbox

    def health(self) -> dict[str, Any]:
        """What /healthz shows of the events stage."""
        return {"events_total": self.events_total, "events_skipped_frames": self.skipped,
                "storage_write_errors": self.write_errors}

    def on_frame(self, camera: str, when: float, jpeg: bytes, size: tuple[int, int], detections: list[Detection],
                 wall: float | None = None) -> None:
        """A processed frame's detections at steady time `when`, wall-clock label `wall` (default `when`),
        called on the loop for every processed frame.

        Frames wait in an inbox that one job on the events thread drains, so a burst of frames
        costs one hand-over between threads, not one each.
        """
        self._queue((camera, when, jpeg, size, detections, wall))

    def on_held(self, camera: str, when: float) -> None:
        """A frame the motion gate kept from the detector: what the camera last showed is still there.

        Goes through the same inbox as the frames, so the events thread sees them in order.
        """
        if camera in self.rules:
            self._queue((camera, when, None, (0, 0), [], None))

    def objects_moving(self, camera: str) -> bool:
        """Whether a tracked object of the camera still moves (the motion gate's "objects" reason).

        A plain bool the events thread writes: reading it from the loop is safe.
        """
        rules = self.rules.get(camera)
        return rules is not None and rules.moving

    def _queue(self, item: tuple[str, float, bytes | None, tuple[int, int], list[Detection], float | None]) -> None:
        if len(self._inbox) >= MAX_PENDING:
            self.skipped += 1
            return
        self._inbox.append(item)
        if not self._draining:
            self._draining = True
            self._submit(self._drain).add_done_callback(self._drained)

    def forget_camera(self, camera: str) -> None:
        """The server forgot a camera id: its per-label counts go (no metric series for a camera long gone)."""
        for key in [k for k in self.started if k[0] == camera]:
            del self.started[key]

    def camera_offline(self, camera: str) -> None:
        """The camera went away: its events end."""
        self._submit(self._end_camera, camera, self.clock(), "camera offline")

    # --- on the events thread -------------------------------------------------------------

    def _drain(self) -> list[Change]:
        changes: list[Change] = []
        while True:
            try:
                frame = self._inbox.popleft()
            except IndexError:
                return changes
            changes += self._process(*frame)

    async def apply_shapes(self, config: EventsConfig) -> None:
        """Take new zones, object masks and label filters at once (the config API's live apply); the rest of
        [events] stays as the server started with it. Done on the events thread, between two frames."""
        await self._run(self._reshape, config)

    def _reshape(self, new: EventsConfig) -> None:
        self.config = self.config.model_copy(update={"zones": new.zones, "masks": new.masks, "filters": new.filters})
        self.zones = by_camera(self.config.zones)
        for camera, rules in self.rules.items():
            rules.reshape(self.config, self.zones.get(camera))

    def _process(self, camera: str, when: float, jpeg: bytes | None, size: tuple[int, int],
                 detections: list[Detection], wall: float | None) -> list[Change]:
        rules = self.rules.get(camera)
        if jpeg is None:  # a held frame
            return self._store(rules.on_held(when), when) if rules is not None else []
        if rules is None:
            if not detections:
                return []  # no tracker for a camera that never showed anything
            rules = self.rules[camera] = CameraRules(camera, self.config, self.zones.get(camera))
        return self._store(rules.on_frame(when, jpeg, size, detections, wall), when)

    def _sweep(self, now: float) -> list[Change]:
        return [c for rules in self.rules.values() for c in self._store(rules.sweep(now), now)]

    def _end_camera(self, camera: str, when: float, reason: str) -> list[Change]:
        rules = self.rules.pop(camera, None)
        return self._store(rules.end_all(when, reason), when) if rules else []

    def _end_all(self, when: float, reason: str) -> list[Change]:
        return [c for camera in list(self.rules) for c in self._end_camera(camera, when, reason)]

    def _store(self, changes: list[Change], when: float) -> list[Change]:
        for change in changes:
            try:
                # updated_at is the event's own label of the change: a crash's end_time is never before its start
                self.store.save(change.after, change.snapshot, change.at if change.at is not None else when)
            except Exception as exc:  # disk full, folder or database removed: live events go on
                self._write_failed(exc)
        return changes

    def _write_failed(self, exc: Exception) -> None:
        self.write_errors += 1
        self.database.suspect(exc)  # the file may be gone or corrupt: checked at the next housekeeping tick
        self._write_log.warning("storage", "event store write failed (%d so far): %s", self.write_errors, exc)

    def _delete(self, event_id: str, now: float) -> tuple[str | None, list[Change]]:
        """(the event's camera or None if there was no such event, the end of it if it was open)."""
        ended = [change for rules in self.rules.values() if (change := rules.forget(event_id, now)) is not None]
        camera = ended[0].after["camera"] if ended else None
        try:
            record = self.store.get(event_id)
            if self.store.delete(event_id) and record is not None:
                camera = record["camera"]
            for forget in self.on_delete:
                forget(event_id)
        except (OSError, sqlite3.Error) as exc:
            self._write_failed(exc)
            if camera is None:
                raise
        return camera, ended

    def _reattach(self, conn: sqlite3.Connection) -> None:
        """The database was recreated: the table again, and the open events written into it."""
        self.store.attach(conn)
        now = self.clock()
        for rules in self.rules.values():
            for record in rules.open_events():
                self._store([Change("update", record, record, at=record["start_time"])], now)

    # --- on the loop ----------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """On the events thread (the database's): tracking, rules and storage, in frame order."""
        return await self.database.run(fn, *args)

    def _submit(self, fn: Callable[..., list[Change]], *args: Any) -> asyncio.Future[list[Change]]:
        self.pending += 1
        future = asyncio.get_running_loop().run_in_executor(self.database, fn, *args)  # Database.submit
        self._tasks.add(future)
        future.add_done_callback(self._done)
        return future

    def _drained(self, future: asyncio.Future[list[Change]]) -> None:
        if self._inbox and not future.cancelled():
            self._submit(self._drain).add_done_callback(self._drained)  # frames came after it last looked
        else:
            self._draining = False

    def _done(self, future: asyncio.Future[list[Change]]) -> None:
        self.pending -= 1
        self._tasks.discard(future)

        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            log.error("event processing failed", exc_info=exc)
            return
        self._announce(future.result())

    def _announce(self, changes: list[Change], feed: bool = True) -> None:
        for change in changes:
            if change.type == "new":
                self.events_total += 1
                self.started[(change.after["camera"], change.after["label"])] += 1
            if self.clips is not None:
                try:
                    self.clips.follow(change)  # a clip starts or ends before anyone hears of the change
                except Exception:
                    log.error("the recorder failed to follow an event change", exc_info=True)
            change.message = public_change(change, self.clips.clip_url if self.clips is not None else no_clip)
            if feed and change.after.get("announced", True):
                self.feed.publish(change.type, change.message)
            for listener in self.listeners:
                try:
                    listener(change)
                except Exception:
                    log.error("an event listener failed", exc_info=True)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            self._submit(self._sweep, self.clock())

