"""Recording through the running server: an event gets a clip a browser can play; deleting the event deletes it."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web

from camserver.app import CamServer
from conftest import ScriptedDetector, connect_camera, make_config, person_between, tagged_jpeg, wait_for
from hooks import receiver
from recordkit import ffprobe, needs_ffmpeg

FPS = 10


@contextlib.asynccontextmanager
async def hook_receiver():
    """A webhook receiver on a free port; yields (url, the messages it got)."""
    got: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response()

    async with receiver(hook) as url:
        yield url, got


@needs_ffmpeg
async def test_an_event_gets_a_clip_of_its_length_plus_pre_and_post(http, tmp_path):
    """A person for 4 s: the event's clip lasts 4 + pre 2 + post 1 s (ffprobe), is listed in the event JSON,
    serves Range requests, reaches the webhook's end message, and goes with the event on DELETE."""
    async with hook_receiver() as (url, got):
        config = make_config(events={"max_disappeared_s": 0.5},
                             record={"mode": "events", "pre_capture_s": 2, "post_capture_s": 1},
                             webhooks=[{"url": url, "types": ["end"]}])
        async with CamServer(config, detector_factory=lambda: ScriptedDetector(person_between(30, 70))) as server:
            base = f"http://127.0.0.1:{server.http_port}"
            cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
            started = time.monotonic()
            for seq in range(1, 121):  # 12 s at 10 fps; the person from 3 s to 7 s
                await cam.send(tagged_jpeg(0, seq))
                await asyncio.sleep(max(0.0, started + seq / FPS - time.monotonic()))
            await wait_for(lambda: bool(got), timeout=15, what="the end webhook")
            event = got[0]["after"]
            assert event["clip"] == f"/api/events/{event['id']}/clip.mp4"

            async with asyncio.timeout(20):  # final once post-capture and the span's pre-capture wait passed
                while (clip := await server.recorder.clip_file(event["id"])) is None or clip.in_progress:
                    await asyncio.sleep(0.3)
            async with http.get(f"{base}/api/events/{event['id']}") as resp:
                record = await resp.json()
            assert record["has_clip"] and record["clip_start"] < record["start_time"] < record["clip_end"]
            async with http.get(f"{base}/api/events/{event['id']}/clip.mp4") as resp:
                assert resp.status == 200 and resp.headers["Content-Type"] == "video/mp4"
                body = await resp.read()
            async with http.get(f"{base}/api/events/{event['id']}/clip.mp4", headers={"Range": "bytes=0-99"}) as resp:
                assert resp.status == 206 and await resp.read() == body[:100]
            path = tmp_path / "clip.mp4"
            path.write_bytes(body)
            duration = float(ffprobe(path)["format"]["duration"])
            expected = (event["end_time"] - event["start_time"]) + 2 + 1
            assert abs(duration - expected) <= 0.5, (duration, expected)
            assert clip.path.exists()
            async with http.delete(f"{base}/api/events/{event['id']}") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/api/events/{event['id']}/clip.mp4") as resp:
                assert resp.status == 404
            assert not clip.path.exists()
            await cam.close()


@needs_ffmpeg
async def test_recordings_count_toward_max_mb_and_go_before_events(tmp_path):
    """Continuous segments fill storage past max_mb: the oldest segments go first, the event stays, and the
    recordings' bytes are counted in /healthz."""
    from conftest import FakeDetector, make_jpeg

    config = make_config(record={"mode": "continuous", "segment_s": 2}, storage={"max_mb": 1.0},
                         events={"labels": ["*"], "max_disappeared_s": 0.5})
    async with CamServer(config, detector_factory=FakeDetector) as server:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/yard")
        started = time.monotonic()
        for seq in range(1, 121):  # 12 s of noise, which H.264 cannot shrink: megabytes of segments
            await cam.send(make_jpeg(seq, 320, 240, noise=True))
            await asyncio.sleep(max(0.0, started + seq / FPS - time.monotonic()))
        await cam.close()
        await wait_for(lambda: server.events.events_total >= 1, what="the event")
        index = server.recorder.index

        def segments() -> int:
            return server.database.submit(
                lambda: index.db.execute("SELECT count(*) FROM recordings WHERE kind = 'segment'").fetchone()[0]).result()

        async with asyncio.timeout(40):  # a budget round: the oldest segments go
            while server.database.budget.removed.get("recordings", 0) == 0:
                await asyncio.sleep(0.5)
        assert segments() >= 1 and server.database.budget.removed["recordings"] >= 1
        assert len(await server.events.query({}, 10, None)) == 1  # events go only after recordings
        storage = server.health()["storage"]
        assert "recordings" in storage["used_bytes"] and storage["removed_by_retention"]["recordings"] >= 1
