"""Board control: settings kept per camera and sent on every hello, reported values from the status,
firmware images and updates over the air.

Reads are answered from memory on the event loop; database work runs on the database's thread, image
file work on the default executor.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from ..ingest.control import FRAME_SIZES, QUALITY_RANGE
from ..logsafe import ThrottledLog, printable, redact
from ..storage import Database
from .firmware import FirmwareStore, ImageInfo, OtaLink, OtaLinks
from .settings import Settings, SettingsStore, merge_settings, reported_from_status

log = logging.getLogger(__name__)
T = TypeVar("T")

# A camera's reported settings are written at most once per this many seconds (the latest wins): a
# board flooding statuses must not queue a database write each ahead of everyone else's
REPORTED_WRITE_INTERVAL_S = 1.0


class UnknownImage(LookupError):
    """No stored image of that name."""


class BoardService:
    """Per-camera settings (desired and reported), firmware images, one-time update links.

    Args:
        storage_dir: storage.dir; images go to its firmware/ folder.
        configured: camera id -> `[cameras.<id>.settings]`, validated; it wins over stored values at start.
        clock: wall-clock time, only for the labels shown (requested_at, expires_at, finished_at).
        steady: steady (monotonic) time: the download links' lifetime and an update's expiry run on it,
            so a wall-clock step neither expires them early nor keeps them alive (tests inject one).
    """

    def __init__(self, storage_dir: Path, configured: Mapping[str, Mapping[str, Any]] | None = None,
                 clock: Callable[[], float] = time.time, link_lifetime_s: float = 600.0,
                 steady: Callable[[], float] = time.monotonic) -> None:
        self.storage_dir = storage_dir
        self.configured = {camera: dict(values) for camera, values in (configured or {}).items()}
        self.clock = clock
        self.steady = steady
        self.firmware = FirmwareStore(storage_dir / "firmware")
        self.links = OtaLinks(clock, link_lifetime_s, steady=steady)
        self.desired: dict[str, Settings] = {}
        self.reported: dict[str, Settings] = {}
        self.unsupported: dict[str, list[str]] = {}
        self.running: dict[str, str] = {}  # camera -> firmware version of its last hello
        self.updates: dict[str, dict[str, Any]] = {}  # camera -> the last update asked for
        # camera -> the desired quality its board refused at a framesize, and the quality it used instead
        self.quality_refused: dict[str, dict[str, Any]] = {}
        self.write_errors = 0
        self.reported_writes = 0  # reported settings written to the database
        self.dropped_reported: dict[str, int] = {}  # camera -> reported values that failed the range check
        self._store: SettingsStore | None = None
        self._database: Database | None = None
        self._writes: set[asyncio.Future[Any]] = set()
        self._write_log = ThrottledLog(log, interval_s=60.0)
        self._dropped_log = ThrottledLog(log, interval_s=60.0)
        self._refusal_log = ThrottledLog(log, interval_s=60.0)
        # reported settings waiting for their write: one slot per camera, the latest wins
        self._pending_reported: dict[str, Settings] = {}
        self._reported_timers: dict[str, asyncio.TimerHandle] = {}
        self._reported_writing: set[str] = set()
        self._reported_written_at: dict[str, float] = {}  # camera -> time.monotonic() of its last write
        self._updates_sent = 0

    async def start(self, database: Database) -> None:
        """Create the table in the database, load what is stored, merge the config over it, store the result."""
        assert database.is_open, "Database.open() first"
        self._database = database
        loaded = await database.use(self._open)
        database.attach(self._reattach)
        stored = {camera: desired for camera, (desired, _) in loaded.items()}
        self.desired = merge_settings(stored, self.configured)
        for camera, (_, reported) in loaded.items():
            if reported:
                self.reported[camera] = reported
        changed = {camera: values for camera, values in self.desired.items() if values != stored.get(camera)}
        for camera, values in changed.items():
            await self._run(self._save_desired, camera, values, self.clock())
        if changed:
            log.info("settings from the config for %s", ", ".join(sorted(changed)))

    def _open(self, db: sqlite3.Connection) -> dict[str, tuple[Settings, Settings]]:
        self.firmware.open()
        self._store = SettingsStore(db)
        return self._store.load()

    def _reattach(self, db: sqlite3.Connection) -> None:
        """The database was recreated (its file lost): the table again, with the settings kept in memory."""
        self._store = SettingsStore(db)
        now = self.clock()
        for camera, values in list(self.desired.items()):
            self._store.save_desired(camera, values, now)
        for camera, values in list(self.reported.items()):
            self._store.save_reported(camera, values, now)

    def _save_desired(self, camera: str, values: Settings, now: float) -> None:
        assert self._store is not None
        self._store.save_desired(camera, values, now)

    def _save_reported(self, camera: str, values: Settings, now: float) -> None:
        assert self._store is not None
        self._store.save_reported(camera, values, now)

    async def stop(self) -> None:
        """Write what waits (reported settings included, at once) and finish pending writes."""
        for timer in self._reported_timers.values():
            timer.cancel()
        self._reported_timers.clear()
        while self._writes or self._pending_reported:
            for camera in [c for c in self._pending_reported if c not in self._reported_writing]:
                self._write_reported(camera)
            if self._writes:
                await asyncio.gather(*list(self._writes), return_exceptions=True)
            elif self._pending_reported:  # no store or executor: nothing can write them
                break
        self._store = None

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """On the database's thread."""
        assert self._database is not None, "BoardService.start() first"
        return await self._database.run(fn, *args)

    @staticmethod
    async def _files(fn: Callable[..., T], *args: Any) -> T:
        """Image file work, on the default executor: a 2 MB write must not hold up the events thread."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _write_later(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any] | None:
        """A database write from a sync hook: runs on the executor, failures counted and logged."""
        if self._database is None or self._store is None:
            return None
        future = asyncio.get_running_loop().run_in_executor(self._database, fn, *args)  # Database.submit
        self._writes.add(future)
        future.add_done_callback(self._written)
        return future

    def _queue_reported(self, camera_id: str, values: Settings) -> None:
        """Keep reported values for writing: at once if the camera's last write is a second old, else
        when it is; meanwhile newer values replace these, so one camera has at most one write queued."""
        self._pending_reported[camera_id] = values
        if camera_id in self._reported_timers or camera_id in self._reported_writing:
            return
        last = self._reported_written_at.get(camera_id)
        wait = 0.0 if last is None else last + REPORTED_WRITE_INTERVAL_S - time.monotonic()
        if wait <= 0:
            self._write_reported(camera_id)
        else:
            self._reported_timers[camera_id] = asyncio.get_running_loop().call_later(wait, self._write_reported,
                                                                                   camera_id)

    def _write_reported(self, camera_id: str) -> None:
        timer = self._reported_timers.pop(camera_id, None)
        if timer is not None:
            timer.cancel()  # when called by stop(), not by the timer
        values = self._pending_reported.pop(camera_id, None)
        if values is None:
            return
        self._reported_written_at[camera_id] = time.monotonic()
        future = self._write_later(self._save_reported, camera_id, values, self.clock())
        if future is None:
            return
        self._reported_writing.add(camera_id)
        future.add_done_callback(lambda f: self._reported_done(camera_id, f))

    def _reported_done(self, camera_id: str, future: asyncio.Future[Any]) -> None:
        self._reported_writing.discard(camera_id)
        if not future.cancelled() and future.exception() is None:
            self.reported_writes += 1
        if camera_id in self._pending_reported and camera_id not in self._reported_timers:
            values = self._pending_reported.pop(camera_id)
            self._queue_reported(camera_id, values)

    def _written(self, future: asyncio.Future[Any]) -> None:
        self._writes.discard(future)
        if not future.cancelled() and future.exception() is not None:
            self.write_errors += 1
            self._write_log.warning("write", "could not store camera settings: %s", future.exception())

    # --- settings ---------------------------------------------------------------------------

    def on_hello(self, camera_id: str, hello: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """A camera said hello: returns the control message to send it (its desired settings), or None.

        Also notes the firmware version the hello names, which completes an update to that version.
        """
        version = hello.get("firmware") if isinstance(hello, Mapping) else None
        if isinstance(version, str):
            self.running[camera_id] = version
            update = self.updates.get(camera_id)
            if update is not None and update["state"] in ("sent", "downloading") and version == update["version"]:
                update.update(state="done", finished_at=self.clock())
                log.info("camera %s: now runs firmware %s", camera_id, version)
        desired = self.desired.get(camera_id)
        if not desired:
            return None
        message = dict(desired)
        refused = self._refusal(camera_id)
        if refused is not None:
            # not the quality the board refused again (after a reboot it would fail captures to find out)
            message.pop("quality")
            if refused["quality_used"] is not None:
                message["quality"] = refused["quality_used"]
        return message or None

    def _refusal(self, camera_id: str) -> dict[str, Any] | None:
        """The board's refusal of the desired quality, while the desired quality and framesize are those it refused."""
        refused = self.quality_refused.get(camera_id)
        desired = self.desired.get(camera_id, {})
        framesize = desired.get("framesize", self.reported.get(camera_id, {}).get("framesize"))
        if refused is None or desired.get("quality") != refused["quality"] or framesize != refused["framesize"]:
            return None
        return refused

    def _note_refusal(self, camera_id: str, status: Mapping[str, Any]) -> None:
        """A status's quality_refused: kept when it is the desired quality at the framesize the board is at."""
        asked, used, framesize = status.get("quality_refused"), status.get("quality"), status.get("frame_size")
        desired = self.desired.get(camera_id, {})
        if not _quality(asked) or asked != desired.get("quality") or framesize not in FRAME_SIZES:
            return
        if framesize != desired.get("framesize", framesize):
            return
        refusal = {"quality": asked, "framesize": framesize, "quality_used": used if _quality(used) else None}
        if self.quality_refused.get(camera_id) != refusal:
            self.quality_refused[camera_id] = refusal
            self._refusal_log.warning(camera_id, "camera %s: the board refused quality %d at %s%s; it is not sent "
                                      "again until quality or framesize is changed", printable(camera_id), asked, framesize,
                        f" (it uses {used})" if refusal["quality_used"] is not None else "")

    def on_status(self, camera_id: str, status: Mapping[str, Any]) -> None:
        """A camera's status: records the settings it applied, the error of a failed update, and a rollback."""
        error = status.get("ota_error")
        update = self.updates.get(camera_id)
        if (update is not None and status.get("ota") == "rolled_back" and update["state"] in ("downloading", "done")
                and self.running.get(camera_id) != update["version"]):
            # the new image crashed or never streamed for long enough: the bootloader went back to this one
            update.update(state="rolled_back", finished_at=self.clock(),
                          error=f"rolled back to firmware {self.running.get(camera_id)}")
            log.warning("camera %s: firmware %s rolled back to %s", camera_id, update["version"],
                        str(self.running.get(camera_id)).encode("unicode_escape").decode())
        if update is not None and isinstance(error, str) and update["state"] in ("sent", "downloading"):
            # A board repeats its last update's error in every status until the next update, and a status
            # it sent before reading the update message may still be on its way: the error belongs to this
            # update once the board has read it (update_received), or the image was downloaded, or it is
            # not the error the board reported before
            if update["state"] == "downloading" or update["received"] or error != update["error_before"]:
                update.update(state="failed", error=error[:200], finished_at=self.clock())
                log.warning("camera %s: firmware update failed: %s", camera_id, printable(redact(error)))
        self._note_refusal(camera_id, status)
        parsed = reported_from_status(status)
        if parsed is None:
            return
        reported, unsupported, dropped = parsed
        if dropped:
            self.dropped_reported[camera_id] = self.dropped_reported.get(camera_id, 0) + len(dropped)
            self._dropped_log.warning(camera_id, "camera %s: reported settings out of range, not kept: %s",
                                      printable(camera_id), printable(", ".join(dropped)))
        self.unsupported[camera_id] = unsupported
        if self.reported.get(camera_id) != reported:
            self.reported[camera_id] = reported
            self._queue_reported(camera_id, reported)

    def settings(self, camera_id: str) -> dict[str, Any]:
        """What GET /api/cameras/<id>/settings shows."""
        return {"camera": camera_id, "desired": self.desired.get(camera_id, {}),
                "reported": self.reported.get(camera_id, {}), "unsupported": self.unsupported.get(camera_id, []),
                "reported_dropped": self.dropped_reported.get(camera_id, 0),
                "quality_refused": self._refusal(camera_id)}

    def knows(self, camera_id: str) -> bool:
        """Whether settings or an update were ever kept for this camera id."""
        return camera_id in self.desired or camera_id in self.reported or camera_id in self.updates

    async def set_desired(self, camera_id: str, message: Mapping[str, Any]) -> Settings:
        """Keep a validated settings message's values as desired (stored before it returns)."""
        desired = {**self.desired.get(camera_id, {}), **message}
        self.desired[camera_id] = desired
        if "quality" in message or "framesize" in message:
            self.quality_refused.pop(camera_id, None)  # the user chose again: the board may try it
        await self._run(self._save_desired, camera_id, desired, self.clock())
        return desired

    # --- firmware -------------------------------------------------------------------------

    async def upload(self, name: str, data: bytes) -> ImageInfo:
        """Check and store an image (raises ValueError, BadImage, FileExistsError; see FirmwareStore.save)."""
        info = await self._files(self.firmware.save, name, data)
        log.info("firmware image %s stored: %d bytes, md5 %s, version %s", info.name, info.size, info.md5, info.version)
        return info

    async def images(self) -> list[ImageInfo]:
        """Every stored image."""
        return await self._files(self.firmware.images)

    async def delete_image(self, name: str) -> bool:
        """Remove an image; False when there was none."""
        return await self._files(self.firmware.delete, name)

    async def prepare_update(self, camera_id: str, image: str,
                             base_url: str) -> tuple[dict[str, Any], OtaLink, ImageInfo]:
        """The update message for a camera: a fresh one-time link to the image, its MD5 and size.

        Raises:
            UnknownImage: no such image.
        """
        info = await self._files(self.firmware.info, image)
        if info is None:
            raise UnknownImage(image)
        link = self.links.create(camera_id, info.name, info.md5, info.size)
        message = {"ota_url": f"{base_url.rstrip('/')}/ota/{link.token}", "ota_md5": info.md5, "ota_size": info.size}
        return message, link, info

    def update_sent(self, camera_id: str, link: OtaLink, version: str | None,
                    status: Mapping[str, Any] | None) -> Callable[[], None]:
        """The update message went out: track it until the camera says hello with the new version.

        Returns what to call once the camera has read the message (see update_received).
        """
        before = status.get("ota_error") if isinstance(status, Mapping) else None
        self._updates_sent += 1
        number = self._updates_sent
        self.updates[camera_id] = {
            "image": link.image, "version": version, "md5": link.md5, "size": link.size, "state": "sent",
            "error": None, "requested_at": self.clock(), "expires_at": link.expires_at, "finished_at": None,
            "deadline": link.deadline,
            "error_before": before, "received": False, "number": number,
        }
        return lambda: self.update_received(camera_id, number)

    def update_received(self, camera_id: str, number: int) -> None:
        """The camera has read update `number`: every ota_error it reports from now on is this update's,
        even the same text as the one before (a second refusal for the same reason)."""
        update = self.updates.get(camera_id)
        if update is not None and update["number"] == number:
            update["received"] = True

    async def download(self, token: str) -> tuple[OtaLink, bytes] | None:
        """The image behind a one-time token, spending the token; None if unknown, spent or expired."""
        link = self.links.take(token)
        if link is None:
            return None
        data = await self._files(self.firmware.read, link.image)
        if data is None:
            return None
        update = self.updates.get(link.camera)
        if update is not None and update["state"] == "sent" and update["md5"] == link.md5:
            update["state"] = "downloading"
        return link, data

    def firmware_state(self, camera_id: str) -> dict[str, Any]:
        """What GET /api/cameras/<id>/firmware shows: the version running and the last update."""
        update = self.updates.get(camera_id)
        shown = None
        if update is not None:
            shown = {k: v for k, v in update.items() if k not in ("error_before", "received", "number", "deadline")}
            if shown["state"] == "sent" and self.steady() >= update["deadline"]:
                shown["state"] = "expired"  # the board never fetched its link
        return {"camera": camera_id, "running": self.running.get(camera_id), "update": shown}


def _quality(value: Any) -> bool:
    """Whether a status's value is a quality a control message could carry."""
    return isinstance(value, int) and not isinstance(value, bool) and QUALITY_RANGE[0] <= value <= QUALITY_RANGE[1]
