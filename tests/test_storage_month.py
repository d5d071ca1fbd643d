"""A month in minutes: storage, recording index and retention through 30 simulated days on injected clocks."""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from collections import deque
from pathlib import Path

from camserver.record.index import RecordingIndex, recording_path
from camserver.record.kind import RecordingsKind
from camserver.storage import Database
from camserver.storage.floor import Space
from recordkit import du

DAY = 86400.0
HOUR = 3600.0
KB = 1024
SEGMENT_BYTES = 6 * KB  # one synthetic segment a simulated hour per camera: 288 KB a day for the two
CAMERAS = ("yard", "door")
MAX_MB = 1.25  # about four days of both cameras with the database
RETAIN_DAYS = 6.0  # longer than the budget holds: the budget decides, except where a step would fool an age
DISK = 10 * 1024 * KB  # the simulated disk
MIN_FREE_MB = 0.8  # the floor (10% of the disk would be 1 MB)


class Machine:
    """The simulated machine: a monotonic clock since boot, a wall clock that can step, a disk others fill."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.boot = 0.0  # simulated seconds since the start of the month at this boot
        self.since_boot = 0.0
        self.step = 0.0  # wall minus true time
        self.others = 0  # bytes of other programs' files on the disk

    @property
    def true_time(self) -> float:
        return self.boot + self.since_boot

    def wall(self) -> float:
        return 1_800_000_000.0 + self.true_time + self.step

    def monotonic(self) -> float:
        return 5000.0 + self.since_boot

    def ours(self) -> int:
        return du(self.root)

    def space(self, _directory: Path) -> Space:
        return Space(DISK - self.others - self.ours(), DISK)


def camserver_memory() -> int:
    """Bytes traced to camserver's code (not the interpreter's own tables, not what the test keeps)."""
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*/camserver/*")])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def open_storage(machine: Machine) -> tuple[Database, RecordingIndex]:
    """The storage and recording stages as the app wires them, on the machine's clocks."""
    database = Database(machine.root, MAX_MB, clock=machine.wall, min_free_mb=MIN_FREE_MB, space=machine.space,
                        monotonic=machine.monotonic)
    index = RecordingIndex(database, machine.root)
    database.attach(lambda conn: index.create())
    await database.open()
    await database.run(index.create)
    database.budget.add(RecordingsKind(index, RETAIN_DAYS))
    return database, index


def record_hour(index: RecordingIndex, machine: Machine, made: deque[bytes]) -> None:
    """Each camera's segment of the hour just past, as the recorder writes it: the row, the file, the finish."""
    end = machine.wall()
    for camera in CAMERAS:
        start = end - HOUR
        path = recording_path(camera, "segment", start)
        index.add(path, camera, "segment", start)
        file = index.file(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(os.urandom(SEGMENT_BYTES))
        index.finish(path, start, end, 36000, SEGMENT_BYTES, 320, 240)
        made.append(path.encode())  # a copy of the test's own: not camserver's memory


def kept(index: RecordingIndex) -> list[str]:
    return [r[0] for r in index.db.execute("SELECT path FROM recordings ORDER BY seq")]


async def test_a_month_of_two_cameras_under_a_budget_with_clock_steps_and_a_full_disk(tmp_path, caplog):
    """30 simulated days, 2 cameras, a segment an hour each, max_mb about 4 days; the clock stepped back 1 h on day
    8 and forward 1 day on day 18, a restart after an hour down on day 24, another program leaving less than the
    floor free on days 12-14: every day the budget and the floor hold, the newest day is all there and what is
    kept is exactly the newest recordings made (nothing else lost); memory and file descriptors end where they
    started; in well under 3 minutes."""
    started = time.monotonic()
    machine = Machine(tmp_path / "data")
    made: deque[bytes] = deque(maxlen=2 * 24 * 10)  # the last 10 days made (more than the budget holds)
    database, index = await open_storage(machine)
    budget = database.budget
    fds_at_start = mem_at_start = None
    floor = budget.floor.bytes_for(DISK)
    figures = []
    try:
        for hour in range(1, 30 * 24 + 1):
            day = hour / 24
            machine.since_boot += HOUR
            if hour == 8 * 24:
                # a laptop's clock stepped back after a suspend (by a second more than the hour: a file named
                # by the very millisecond of another is the recorder's concern, not retention's)
                machine.step -= HOUR + 1.0
            if hour == 18 * 24:
                machine.step += DAY  # a Pi without a real-time clock syncs with NTP
            if hour == 12 * 24:  # another program leaves less than the floor free
                machine.others = DISK - machine.ours() - (floor - 400 * KB)
            if hour == 14 * 24:
                machine.others = 0
            if hour == 24 * 24:  # a restart: an hour down, the monotonic clock starts again
                episodes, floor_removed, trimmed = budget.floor.episodes, sum(budget.floor.removed.values()), \
                    budget.removed["recordings"]
                await database.close()
                machine.boot, machine.since_boot = machine.true_time + HOUR, 0.0
                database, index = await open_storage(machine)
                budget = database.budget
            await database.run(record_hour, index, machine, made)
            for _ in range(20):
                if not await budget.round():
                    break
            if hour % 24:
                continue
            rows = await database.run(kept, index)
            assert len(rows) < len(made) or hour < 10 * 24
            assert [p.encode() for p in rows] == list(made)[-len(rows):], f"day {day:.0f}: not the newest recordings made"  # nothing else lost
            assert len(rows) >= 2 * 24, f"day {day:.0f}: the newest day is not all there ({len(rows)} kept)"
            assert all(index.file(p).exists() for p in rows[-48:])
            on_disk = machine.ours()
            assert on_disk <= MAX_MB * 1024 * KB, f"day {day:.0f}: {on_disk} bytes over max_mb"
            free = machine.space(machine.root).free
            assert free >= floor, f"day {day:.0f}: {free} bytes free, under the floor {floor}"
            figures.append((int(day), len(rows), on_disk, free))
            if hour == 2 * 24:  # the first days made the tables and caches; from here nothing should grow
                gc.collect()
                fds_at_start = fds()
                tracemalloc.start()
                mem_at_start = camserver_memory()
        gc.collect()
        mem_growth = camserver_memory() - mem_at_start
        tracemalloc.stop()
        assert fds() == fds_at_start
        assert mem_growth < 32 * KB, mem_growth
        assert episodes >= 1 and floor_removed >= 1 and trimmed > 0  # the floor and the budget both acted
        lines = [r for r in caplog.records if "under storage.min_free_mb" in r.getMessage()]
        assert 1 <= len(lines) <= episodes, [r.getMessage() for r in lines]  # one line per episode, at most
        assert budget.removed["recordings"] > 0  # and the budget after the restart
    finally:
        await database.close()
    elapsed = time.monotonic() - started
    print(f"30 days in {elapsed:.1f} s; floor: {episodes} episode(s), {floor_removed} removed; budget removed "
          f"{trimmed} + {budget.removed['recordings']}; (day, kept, bytes, free): {figures[::3]}; "
          f"camserver's memory grew {mem_growth} B")
    assert elapsed < 180, elapsed
