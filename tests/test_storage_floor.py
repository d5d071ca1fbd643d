"""A disk that something else fills: camserver keeps recording, gives up its own oldest footage, and resumes at once."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from camserver.app import CamServer
from conftest import connect_camera, make_config, make_jpeg, wait_for

FPS = 10
CAMERAS = ("yard", "door")
KB = 1024


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs of the test's own (unmounted after)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], capture_output=True,
                          text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def free_bytes(folder: Path) -> int:
    """Free bytes on the disk of `folder`."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def fill_to(filler: Path, leave: int) -> None:
    """Grow `filler` (another program's file) until about `leave` bytes are free."""
    with open(filler, "ab") as f:
        while (room := free_bytes(filler.parent) - leave) > 0:
            try:
                f.write(b"\0" * min(room, 1 << 20))
                f.flush()
            except OSError:  # the disk filled under us: what camserver writes meanwhile
                break


class Cameras:
    """Two cameras sending a moving scene at FPS in the background; their frames counted by the server."""

    def __init__(self, server: CamServer) -> None:
        self.server = server
        self.tasks: list[asyncio.Task] = []
        self.stop = asyncio.Event()

    async def start(self) -> None:
        for k, cid in enumerate(CAMERAS):
            ws = await connect_camera(f"ws://127.0.0.1:{self.server.ws_port}/ws/{cid}")
            self.tasks.append(asyncio.create_task(self._send(ws, k)))

    async def _send(self, ws, k: int) -> None:
        started, n = time.monotonic(), 0
        while not self.stop.is_set():
            n += 1
            # noise (H.264 cannot shrink it): about 75 KB/s of recording per camera
            await ws.send(make_jpeg(n, 160, 120, noise=True))
            await asyncio.sleep(max(0.0, started + n / FPS - time.monotonic()))
        await ws.close()

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per camera: (frames received, frames recorded)."""
        out = {}
        for cid in CAMERAS:
            cam, rec = self.server.hub.get(cid), self.server.recorder.cameras.get(cid)
            out[cid] = (cam.frames_received if cam else 0, rec.frames_recorded if rec else 0)
        return out

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)


def rows(data: Path) -> list[tuple[str, int, float, float | None]]:
    """(path, seq, start, end) of every recording, by a connection of the test's own."""
    db = sqlite3.connect(f"file:{data / 'camserver.db'}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT path, seq, start_time, end_time FROM recordings ORDER BY seq").fetchall()
    finally:
        db.close()


def quick_check(data: Path) -> list[str]:
    db = sqlite3.connect(f"file:{data / 'camserver.db'}?mode=ro", uri=True, timeout=10)
    try:
        return [r[0] for r in db.execute("PRAGMA quick_check")]
    finally:
        db.close()


async def test_a_disk_filled_by_another_file_keeps_recording_and_gives_up_the_oldest(small_disk):
    """24 MB tmpfs, 2 cameras recording continuously, another file fills it to ~100 KB free: in the next minute
    >= 90% of the frames are recorded, camserver's oldest recordings go (never the newest, < 20 s old), no request
    answers 500, the database passes quick_check; filled again to 0 with nothing left to remove, recording pauses
    with a /healthz reason and resumes within 5 s of the space returning."""
    data = small_disk / "data"
    config = make_config(record={"mode": "continuous", "segment_s": 2},
                         storage={"dir": str(data), "max_mb": 1000, "min_free_mb": 1})
    statuses: list[int] = []
    async with CamServer(config, detector_factory=None) as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.http_port}"

        async def get(path: str) -> dict | None:
            async with http.get(base + path) as resp:
                statuses.append(resp.status)
                return await resp.json() if resp.content_type == "application/json" else None

        cams = Cameras(server)
        await cams.start()

        try:
            budget = server.database.budget
            async with asyncio.timeout(90):  # a few MB of our own recordings first
                while budget.last is None or budget.last.files.get("recordings", 0) < 3 << 20:
                    await asyncio.sleep(0.5)

            before = rows(data)
            filler = small_disk / "other-program.bin"
            fill_to(filler, 100 * KB)
            offered0 = cams.counts()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 60:
                storage = (await get("/healthz"))["storage"]
                now = time.time()
                await get(f"/api/cameras/yard/clip.mp4?start={now - 8}&end={now - 4}")
                await asyncio.sleep(1.0)
            offered1 = cams.counts()
            for cid in CAMERAS:
                offered = offered1[cid][0] - offered0[cid][0]
                recorded = offered1[cid][1] - offered0[cid][1]
                assert offered >= 0.8 * 60 * FPS, (cid, offered)  # the cameras kept sending
                assert recorded >= 0.9 * offered, (cid, recorded, offered)
                print(f"{cid}: {recorded} of {offered} frames recorded in the minute after the fill")
            storage = (await get("/healthz"))["storage"]
            assert storage["floor_episodes"] >= 1 and storage["removed_for_free_space"]["recordings"] >= 1, storage
            after = rows(data)
            kept_before = {r[0] for r in after} & {r[0] for r in before}
            gone = [r for r in before if r[0] not in kept_before]
            assert gone and gone == before[:len(gone)], "the oldest went first, and only they"
            listed = [r for cid in CAMERAS for r in (await get(f"/api/cameras/{cid}/recordings"))["recordings"]]
            newest = max(r["end_time"] or time.time() for r in listed)
            assert time.time() - newest < 20, time.time() - newest
            assert quick_check(data) == ["ok"]

            # the other program takes every byte camserver frees: at last nothing of its own is left to remove
            async with asyncio.timeout(90):
                while (await get("/healthz"))["storage"]["paused_reason"] is None:
                    fill_to(filler, 0)
                    await asyncio.sleep(0.2)
            paused = (await get("/healthz"))
            assert "nothing of camserver's own left to remove" in paused["storage"]["paused_reason"]
            assert paused["recording"]["record_paused_cameras"], paused["recording"]
            stuck = cams.counts()
            await asyncio.sleep(2)
            assert cams.counts()["yard"][1] - stuck["yard"][1] <= 2 * FPS  # paused: at most what was queued
            filler.unlink()
            back = time.monotonic()
            recorded = {cid: cams.counts()[cid][1] for cid in CAMERAS}
            await wait_for(lambda: all(cams.counts()[cid][1] > recorded[cid] + FPS for cid in CAMERAS),
                           timeout=15, what="recording to resume")
            resumed_s = time.monotonic() - back
            assert resumed_s < 5, resumed_s
            print(f"recording resumed {resumed_s:.2f} s after the space returned; floor removed "
                  f"{storage['removed_for_free_space']}")
            storage = (await get("/healthz"))["storage"]
            assert storage["paused_reason"] is None
        finally:
            await cams.close()
        assert 500 not in statuses, statuses
    assert quick_check(data) == ["ok"]


async def test_a_recording_whose_file_is_already_gone_never_stalls_the_floor(small_disk):
    """A floor round that removed a file and then found no room for its row's deletion (the recorders took the
    bytes first) leaves a row without a file. The disk full to the last byte, the next rounds must go on to the
    next files rather than retry that row forever: recording resumes and the row goes once there is room."""
    data = small_disk / "data"
    config = make_config(record={"mode": "continuous", "segment_s": 2},
                         storage={"dir": str(data), "max_mb": 1000, "min_free_mb": 1})
    async with CamServer(config, detector_factory=None) as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.http_port}"
        cams = Cameras(server)
        await cams.start()
        try:
            await wait_for(lambda: sum(1 for r in rows(data) if r[3] is not None) >= 8, timeout=60,
                           what="eight finished segments")
            oldest = rows(data)[0][0]
            (data / oldest).unlink()  # what the stopped round left: the row, not the file
            fill_to(small_disk / "other-program.bin", 0)
            full = cams.counts()

            def recording_again() -> bool:
                return all(cams.counts()[cid][1] > full[cid][1] + 2 * FPS for cid in CAMERAS)

            await wait_for(recording_again, timeout=20, what="recording to go on on the full disk")
            await wait_for(lambda: oldest not in {r[0] for r in rows(data)}, timeout=10, what="the row to go")
            async with http.get(base + "/healthz") as resp:
                storage = (await resp.json())["storage"]
            assert storage["removed_for_free_space"]["recordings"] >= 2, storage
            assert storage["paused_reason"] is None, storage
        finally:
            await cams.close()
    assert quick_check(data) == ["ok"]
