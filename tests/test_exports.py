"""Span exports by viewers: bounded in number, bytes and threads, counted in storage.max_mb, never a 500."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from camserver.app import CamServer
from camserver.record.exporter import EXPORT_SHARE
from conftest import connect_camera, make_config, make_jpeg
from recordkit import du

FPS = 10
MiB = 1024 * 1024




async def send(server: CamServer, camera: str, stop: asyncio.Event) -> None:
    """A camera sending noise at FPS (about 75 KB/s of recording) until `stop`."""
    ws = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/{camera}")
    started, n = time.monotonic(), 0
    while not stop.is_set():
        n += 1
        await ws.send(make_jpeg(n, 160, 120, noise=True))
        await asyncio.sleep(max(0.0, started + n / FPS - time.monotonic()))
    await ws.close()


async def test_150_concurrent_distinct_exports_never_drop_a_recorded_frame_or_pass_the_budget(tmp_path):
    """While 2 cameras record: distinct exports one after another stop at the exports' share of max_mb with 507
    (JSON), one span asked twice is one file; then 150 concurrent exports of distinct spans by one viewer: the excess
    answered 429 (JSON, Retry-After), no frame dropped from the recording, storage.dir within max_mb."""
    data = tmp_path / "data"
    max_mb = 3.0  # 16 s of recording by 2 cameras fill 2.4 MB; the exports' share is 0.75 MB
    config = make_config(record={"mode": "continuous", "segment_s": 2},
                         storage={"dir": str(data), "max_mb": max_mb, "min_free_mb": 0})
    async with CamServer(config, detector_factory=None) as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.http_port}"
        stop = asyncio.Event()
        feeds = [asyncio.create_task(send(server, cid, stop)) for cid in ("yard", "door")]
        try:
            await asyncio.sleep(16)  # segments to export
            t0 = time.time() - 14

            dropped0 = sum(c.frames_dropped for c in server.recorder.cameras.values())
            exports = server.recorder.exports

            # one after another: each fits until the exports' share of max_mb is in use, then 507
            seq = []
            for k in range(12):
                start = t0 + 0.5 * k
                async with http.get(f"{base}/api/cameras/yard/clip.mp4?start={start:.3f}&end={start + 1:.3f}") as resp:
                    seq.append((resp.status, await resp.json() if resp.status != 200 else await resp.read()))
            codes = [s for s, _ in seq]
            assert 500 not in codes and 200 in codes and 507 in codes, codes
            full = next(body for s, body in seq if s == 507)
            assert full["error"] == "export space full", full
            assert exports.bytes <= EXPORT_SHARE * max_mb * MiB, exports.bytes
            files_before = len(list(exports.folder.iterdir()))
            first_ok = codes.index(200)
            start = t0 + 0.5 * first_ok
            async with http.get(f"{base}/api/cameras/yard/clip.mp4?start={start:.3f}&end={start + 1:.3f}") as resp:
                assert resp.status == 200 and await resp.read() == seq[first_ok][1]  # the same file, again
            assert len(list(exports.folder.iterdir())) == files_before

            async def export(k: int) -> tuple[int, dict | None, str | None]:
                start = t0 + (k % 100) * 0.1 + (k // 100) * 0.05  # 150 distinct spans
                async with http.get(f"{base}/api/cameras/door/clip.mp4?start={start:.3f}&end={start + 2:.3f}") as resp:
                    body = await resp.json() if resp.content_type == "application/json" else None
                    await resp.read()
                    return resp.status, body, resp.headers.get("Retry-After")

            results = await asyncio.wait_for(asyncio.gather(*(export(k) for k in range(150))), 120)
            statuses = [s for s, _, _ in results]
            print(f"150 concurrent exports: {statuses.count(200)} made, {statuses.count(429)} refused 429, "
                  f"{statuses.count(507)} refused 507; one after another: {codes}")
            assert 500 not in statuses and set(statuses) <= {200, 429, 507}, statuses
            assert statuses.count(429) >= 100, statuses
            refusal = next(r for r in results if r[0] == 429)
            assert refusal[1]["error"] == "too many exports" and refusal[2] is not None
            assert exports.bytes <= EXPORT_SHARE * max_mb * MiB, exports.bytes

            await asyncio.sleep(3)  # a budget round after the last finished segment
            dropped = sum(c.frames_dropped for c in server.recorder.cameras.values()) - dropped0
            assert dropped == 0, dropped
            used = du(data)
            print(f"storage.dir on disk: {used / MiB:.2f} MB of max_mb {max_mb}; exports {exports.bytes / MiB:.2f} MB")
            # the budget's figure (a round after each finished segment) holds max_mb but for the database's own
            # overhead, which never costs the newest day; the disk, besides, what the cameras wrote since (< 2 s)
            assert server.database.budget.last.total <= max_mb * MiB + 128 * 1024, server.database.budget.last
            assert used <= max_mb * MiB + 512 * 1024, used
            health = server.health()
            assert health["storage"]["used_bytes"]["exports"] == exports.bytes
            assert health["recording"]["exports"]["refused"]["507"] >= 1
        finally:
            stop.set()
            await asyncio.gather(*feeds)


async def test_an_export_the_disk_fills_under_answers_507_json_not_500(tmp_path, monkeypatch):
    """The disk fills while an export is written (ENOSPC): the viewer gets 507 with a JSON reason, never a 500,
    and the refusal is counted; the next export, once there is room, is made."""
    import errno

    import camserver.record.export as export_module

    config = make_config(record={"mode": "continuous", "segment_s": 2},
                         storage={"dir": str(tmp_path / "data"), "min_free_mb": 0})
    async with CamServer(config, detector_factory=None) as server, aiohttp.ClientSession() as http:
        stop = asyncio.Event()
        feed = asyncio.create_task(send(server, "yard", stop))
        try:
            await asyncio.sleep(5)
            real = export_module.export_span

            def full(*args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(export_module, "export_span", full)
            now = time.time()
            url = f"http://127.0.0.1:{server.http_port}/api/cameras/yard/clip.mp4?start={now - 4}&end={now - 2}"
            async with http.get(url) as resp:
                assert resp.status == 507 and resp.content_type == "application/json"
                assert (await resp.json())["error"] == "disk full"
            assert server.health()["recording"]["exports"]["refused"]["507"] == 1
            monkeypatch.setattr(export_module, "export_span", real)
            async with http.get(url) as resp:
                assert resp.status == 200 and resp.content_type == "video/mp4"
        finally:
            stop.set()
            await feed
