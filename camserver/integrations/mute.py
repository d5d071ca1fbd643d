"""Mute: a camera's (or every camera's) notifications held for 30 minutes, an hour, or until turned back on.

A mute holds what `[mute] holds` names (notifications by default, webhooks optionally); events are
still detected, recorded and shown, and MQTT still says what is there. Mutes are kept in the
database (table `mutes`: a camera id or `*` for all, and the wall-clock time it ends, NULL for
"until turned back on"), so they survive a restart.

Time: the wall-clock end is only what is stored and shown. Within a process a mute ends on the
monotonic clock (its remaining seconds when it was set or loaded), so a clock step (NTP at boot,
a daylight-saving mistake) neither lengthens nor shortens it. Across a restart the stored wall time
is all there is: the remaining time is that minus the clock at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..storage import Database
from ..supervise import Spawn, cancel_and_wait

log = logging.getLogger(__name__)

ALL = "*"  # the target that mutes every camera
MAX_FOR_S = 30 * 86400.0  # a timed mute longer than a month is "until turned back on"
MAX_ROWS = 4096  # mutes read back at start-up (one per camera id; the hub keeps at most 1024)

Listener = Callable[[str], None]  # a target's mute changed (a camera id, or ALL)


@dataclass(frozen=True)
class Mute:
    """One target's mute: when it ends on the monotonic clock (None: until turned back on)."""

    deadline: float | None  # time.monotonic() value
    until: float | None  # the wall-clock label stored and shown


class MuteBoard:
    """Which cameras are muted, for how long; kept in the database; tells listeners of every change.

    Args:
        database: the storage's database (its thread runs the SQL).
        holds: what a mute holds ([mute] holds: "notify", "webhooks").
        wall: wall-clock time (a label only).
        monotonic: the clock mutes end on.
    """

    def __init__(self, database: Database | None, holds: tuple[str, ...] = ("notify",),
                 wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.database = database
        self.holds = holds
        self.wall = wall
        self.monotonic = monotonic
        self.mutes: dict[str, Mute] = {}
        self.listeners: list[Listener] = []
        self.write_errors = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- queries (on the loop) ----------------------------------------------------------------

    def _live(self, target: str) -> Mute | None:
        mute = self.mutes.get(target)
        if mute is not None and mute.deadline is not None and self.monotonic() >= mute.deadline:
            return None  # ended; the expiry task removes it (and tells the listeners) at once
        return mute

    def muted(self, camera: str) -> bool:
        """Whether the camera's notifications are held now (its own mute, or the mute of all)."""
        return self._live(camera) is not None or self._live(ALL) is not None

    def holding(self, what: str) -> Callable[[str], bool]:
        """`muted` if a mute holds `what` ("notify", "webhooks"), else a function that never holds."""
        return self.muted if what in self.holds else lambda camera: False

    def hold(self, what: str, listener: Callable[[Any], None]) -> Callable[[Any], None]:
        """An event listener that skips the changes of muted cameras when a mute holds `what`."""
        if what not in self.holds:
            return listener
        return lambda change: None if self.muted(change.after["camera"]) else listener(change)

    def state(self, camera: str | None) -> dict[str, Any]:
        """`muted`, `muted_until` (wall clock, null while muted until turned back on or not muted), `muted_by`
        ("camera", "all" or null) and `muted_for_s` (seconds left) of a camera, or of the mute of all (None)."""
        own = self._live(camera) if camera is not None else None
        every = self._live(ALL)
        # the one that lasts longer decides what the tile shows
        chosen, by = max(((m, b) for m, b in ((own, "camera"), (every, "all")) if m is not None),
                         key=lambda pair: math.inf if pair[0].deadline is None else pair[0].deadline,
                         default=(None, None))
        return self._describe(chosen, by)

    def _describe(self, mute: Mute | None, by: str | None) -> dict[str, Any]:
        if mute is None:
            return {"muted": False, "muted_until": None, "muted_by": None, "muted_for_s": None}
        left = None if mute.deadline is None else max(0.0, mute.deadline - self.monotonic())
        until = None if left is None else round(self.wall() + left, 3)
        return {"muted": True, "muted_until": until, "muted_by": by,
                "muted_for_s": None if left is None else round(left, 1)}

    def overview(self) -> dict[str, Any]:
        """The mute of all and every camera's own mute (GET /api/mute)."""
        cameras = {t: self._describe(self._live(t), "camera") for t in sorted(self.mutes)
                   if t != ALL and self._live(t) is not None}
        return {"all": self.state(None), "cameras": cameras}

    # --- changes --------------------------------------------------------------------------------

    async def set(self, target: str, for_s: float | None) -> None:
        """Mute `target` (a camera id or ALL) for `for_s` seconds, or until turned back on (None)."""
        if for_s is not None and not (0 < for_s <= MAX_FOR_S):
            raise ValueError(f"for_s must be more than 0 and at most {MAX_FOR_S:g} s, or null")
        if target not in self.mutes and len(self.mutes) >= MAX_ROWS:
            raise ValueError(f"{MAX_ROWS} cameras are muted already; unmute one first")
        now = self.monotonic()
        mute = Mute(None, None) if for_s is None else Mute(now + for_s, self.wall() + for_s)
        self.mutes[target] = mute
        await self._store(target, mute.until, keep=True)
        log.info("muted %s %s", "every camera" if target == ALL else f"camera {target}",
                 "until turned back on" if for_s is None else f"for {for_s:g} s")
        self._announce(target)

    async def clear(self, target: str) -> bool:
        """Turn `target`'s mute off; False when it had none."""
        had = self.mutes.pop(target, None) is not None
        await self._store(target, None, keep=False)
        if had:
            log.info("unmuted %s", "every camera" if target == ALL else f"camera {target}")
            self._announce(target)
        return had

    async def switch(self, camera: str, on: bool) -> None:
        """Home Assistant's switch: ON mutes the camera until turned back off, OFF unmutes it."""
        await (self.set(camera, None) if on else self.clear(camera))

    async def clear_everything(self) -> None:
        """Every mute off, the mute of all and each camera's."""
        for target in sorted(self.mutes):
            await self.clear(target)

    def _announce(self, target: str) -> None:
        self._changed.set()
        for listener in self.listeners:
            try:
                listener(target)
            except Exception:  # one listener's bug never stops the mute or the other listeners
                log.error("a mute listener failed", exc_info=True)

    # --- the database -------------------------------------------------------------------------------

    async def _store(self, target: str, until: float | None, keep: bool) -> None:
        if self.database is None:
            return
        try:
            await self.database.run(self._write, target, until, keep)
        except (sqlite3.Error, OSError, AssertionError) as exc:  # it still holds in this process, only not kept
            self.write_errors += 1
            log.warning("the mute of %s could not be stored (%s); it holds until a restart", target, exc)

    def _write(self, target: str, until: float | None, keep: bool) -> None:
        conn = self._conn()
        if keep:
            conn.execute("INSERT INTO mutes (target, until) VALUES (?, ?) "
                         "ON CONFLICT (target) DO UPDATE SET until = excluded.until", (target, until))
        else:
            conn.execute("DELETE FROM mutes WHERE target = ?", (target,))

    def _conn(self) -> sqlite3.Connection:
        assert self.database is not None, "no database"
        return self.database.connection()  # on the database's thread only

    def _reattach(self, conn: sqlite3.Connection) -> None:
        """A recreated database file (the old one lost): the table again, with the mutes held in memory."""
        self.create(conn)
        for target, mute in list(self.mutes.items()):
            conn.execute("INSERT OR REPLACE INTO mutes (target, until) VALUES (?, ?)", (target, mute.until))

    @staticmethod
    def create(conn: sqlite3.Connection) -> None:
        """The `mutes` table (run on every file the database opens)."""
        conn.execute("CREATE TABLE IF NOT EXISTS mutes (target TEXT PRIMARY KEY, until REAL)")

    def _read(self) -> list[tuple[str, float | None]]:
        conn = self._conn()
        self.create(conn)
        rows = conn.execute("SELECT target, until FROM mutes LIMIT ?", (MAX_ROWS,)).fetchall()
        return [(str(t), None if u is None else float(u)) for t, u in rows]

    async def load(self) -> None:
        """Read back the mutes kept before a restart; those whose wall-clock end has passed are dropped."""
        if self.database is None:
            return
        self.database.attach(self._reattach)
        rows = await self.database.run(self._read)
        wall, now = self.wall(), self.monotonic()
        for target, until in rows:
            if until is None:
                self.mutes[target] = Mute(None, None)
            elif until > wall:
                self.mutes[target] = Mute(now + min(until - wall, MAX_FOR_S), until)
            else:
                await self._store(target, None, keep=False)
        if self.mutes:
            log.info("mutes kept from before the restart: %s", ", ".join(sorted(self.mutes)))

    # --- expiry ---------------------------------------------------------------------------------

    async def start(self, spawn: Spawn) -> None:
        """Read back the kept mutes, then end each when its time is up (a task of its own)."""
        await self.load()
        self._task = spawn("mute", self._expire_forever, "mute-expiry", restart=True)

    async def stop(self) -> None:
        """Stop the expiry task (the mutes stay in the database)."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _expire_forever(self) -> None:
        while True:
            self._changed.clear()
            now = self.monotonic()
            for target, mute in sorted(self.mutes.items()):
                if mute.deadline is not None and now >= mute.deadline:
                    await self.clear(target)
            deadlines = [m.deadline for m in self.mutes.values() if m.deadline is not None]
            wait = min(deadlines) - self.monotonic() if deadlines else None
            try:
                async with asyncio.timeout(None if wait is None else max(wait, 0.01)):
                    await self._changed.wait()
            except TimeoutError:
                pass
