"""The server's time: a steady clock for durations and order, the wall clock for labels, and its steps.

Laptops step their clocks after a suspend; a Raspberry Pi without a real-time clock boots with a
stale time and jumps when NTP syncs. Everything that measures how long (an event's length, a
segment's, pre and post capture, timeouts, "how long ago") runs on the *steady* time: the
monotonic clock, shifted once to the wall clock's scale at start-up, so it reads as the wall clock
until the wall clock steps and never jumps itself. Wall-clock time is only a label, taken once
where a thing starts (a frame, an event, a recording); its later labels are that label plus the
steady time since, so an event never ends before it starts.

A step is a change of (wall - steady) by more than STEP_S between two looks (every frame, and
every second): logged once with its size and direction, and counted for /healthz. NTP corrects small errors by slewing, which moves both
clocks together (Linux slews CLOCK_MONOTONIC with CLOCK_REALTIME), so only real steps (and a
suspend, which the monotonic clock does not count) change the offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

# ntpd steps the clock only past 0.128 s and chrony's usual makestep is 1 s; a leap second is 1 s.
# Reading the two clocks one after the other differs by microseconds. 2 s is clear of all of those
# and well below the steps that matter (a suspend, a boot sync: minutes to years).
STEP_S = 2.0

_BASE = time.time() - time.monotonic()


def steady() -> float:
    """Steady time without a Timeline (a stage built on its own): monotonic, on the wall clock's scale of import."""
    return time.monotonic() + _BASE


class Timeline:
    """Steady time (`now`), wall-clock labels (`wall`), and the steps between them.

    Args:
        wall: the wall clock (time.time).
        monotonic: the monotonic clock (time.monotonic). A test passes one fake clock as both:
            then steady time is that clock and no step is ever seen.
        step_s: a change of (wall - steady) larger than this is a step.
    """

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 step_s: float = STEP_S) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self.step_s = step_s
        self._base = wall() - monotonic()  # steady = monotonic + base: the wall clock's scale at start-up
        self._offset = 0.0  # wall - steady at the last look: moves (by more than step_s) when the wall clock steps
        self.steps = 0
        self.last_step_s: float | None = None  # signed: < 0 the clock went back
        self.last_step_at: float | None = None  # steady time it was seen

    def now(self) -> float:
        """Steady time in seconds: monotonic, on the wall clock's scale of start-up; for durations and order."""
        return self._monotonic() + self._base

    def wall(self) -> float:
        """Wall-clock time, as a label (checked for a step)."""
        return self.stamp()[1]

    def stamp(self) -> tuple[float, float]:
        """(steady time, wall-clock label) of this moment; a step since the last look is logged and counted."""
        steady = self.now()
        wall = self._wall()
        offset = wall - steady
        change, self._offset = offset - self._offset, offset  # small changes too: labels stay exact
        if abs(change) > self.step_s:
            self.steps += 1
            self.last_step_s = change
            self.last_step_at = steady
            log.warning("the wall clock stepped %s by %s (%d step(s) since start); durations, clips and the order "
                        "of recordings go on by the monotonic clock, labels follow the wall clock",
                        "back" if change < 0 else "forward", _size(abs(change)), self.steps)
        return steady, wall

    def check(self) -> None:
        """Look for a step now (called every second, so one is logged even when no camera sends)."""
        self.stamp()

    async def watch(self) -> None:
        """Look for a step every second (frames look too), so one is logged when it happens; until cancelled."""
        while True:
            await asyncio.sleep(1.0)
            self.check()

    def label(self, steady: float) -> float:
        """The wall-clock label of a steady time near now (the offset in force now)."""
        return steady + self._offset

    def not_before(self, steady: float) -> None:
        """Move steady time forward so that it reads at least `steady` now (start-up, before any frame).

        What was recorded before a restart keeps its order: steady times stored by the last run
        (which may have started at a later wall-clock time, before a step back) are never reached again.
        """
        ahead = steady - self.now()
        if ahead > 0:
            self._base += ahead
            self._offset -= ahead

    def health(self) -> dict[str, Any]:
        """What /healthz shows: steps seen since start, the last one's signed size in seconds."""
        self.check()
        return {"steps": self.steps, "last_step_s": None if self.last_step_s is None else round(self.last_step_s, 3),
                "step_threshold_s": self.step_s}


def timeline_of(clock: Timeline | Callable[[], float] | None) -> Timeline:
    """A Timeline from what a caller passes: one (kept), a fake clock (as both wall and monotonic), or None (the real clocks)."""
    if isinstance(clock, Timeline):
        return clock
    if clock is None:
        return Timeline()
    return Timeline(wall=clock, monotonic=clock)


def _size(seconds: float) -> str:
    """'3600.0 s (1.00 h)': the seconds, and in the unit a person reads."""
    for unit, scale in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * scale:
            return f"{seconds:.1f} s ({seconds / scale:.2f} {unit})"
    return f"{seconds:.1f} s"
