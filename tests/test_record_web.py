"""Recording routes on a small aiohttp app: event clips, recordings, exports, Range requests, and Chromium playing a clip."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from camserver.record import probe
from camserver.web.recordings import RecordingsApi
from recordkit import Rig, recording
from browser import CHROMIUM, chromium

T0 = 1_000_000.0
PAGE = """<!doctype html><title>clip</title>
<video id="v" src="/api/events/ev1/clip.mp4" muted preload="auto" controls width="320"></video>"""


@asynccontextmanager
async def serving(rig: Rig, cameras: tuple[str, ...]) -> AsyncIterator[tuple[str, list[str | None]]]:
    """The routes over the rig's Recorder, plus a page with a <video>; yields (base URL, Range headers seen)."""
    ranges: list[str | None] = []

    @web.middleware
    async def note_range(request: web.Request, handler):
        if request.path.endswith(".mp4"):
            ranges.append(request.headers.get("Range"))
        return await handler(request)

    app = web.Application(middlewares=[note_range])
    rec = rig.recorder
    RecordingsApi(rec.clip_file, rec.list_recordings, rec.export, lambda c: c in cameras, clock=rig.clock).add_routes(app)

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", ranges
    finally:
        await runner.cleanup()


async def event_clip(rig: Rig, finish: bool = True) -> None:
    """Camera 'door': an 8 s event ev1 with 5 s pre and post capture (finished unless `finish` is False)."""
    rec = rig.recorder
    t = await rig.feed("door", T0, 10.0)
    rec.event_started("door", "ev1", T0 + 10.0)
    t = await rig.feed("door", t, 8.0, first=100)
    if not finish:
        return
    rec.event_ended("door", "ev1", T0 + 18.0)
    await rig.feed("door", t, 11.0, first=180)
    await rig.settled("door", count=1)


async def test_event_clip_with_range_requests(tmp_path):
    """clip.mp4 serves the event's file as video/mp4; a Range request gets 206 and exactly those bytes; no clip is 404."""
    async with recording(tmp_path, mode="events") as rig:
        await event_clip(rig)
        path = (await rig.recorder.clip_file("ev1")).path
        data = path.read_bytes()
        async with serving(rig, ("door",)) as (base, _), aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/events/ev1/clip.mp4") as resp:
                assert resp.status == 200 and resp.content_type == "video/mp4"
                assert resp.headers["Accept-Ranges"] == "bytes" and await resp.read() == data
            async with http.get(f"{base}/api/events/ev1/clip.mp4", headers={"Range": "bytes=100-1099"}) as resp:
                assert resp.status == 206
                assert resp.headers["Content-Range"] == f"bytes 100-1099/{len(data)}"
                assert await resp.read() == data[100:1100]
            async with http.get(f"{base}/api/events/ev1/clip.mp4", headers={"Range": f"bytes={len(data) - 10}-"}) as resp:
                assert resp.status == 206 and await resp.read() == data[-10:]
            async with http.get(f"{base}/api/events/nope/clip.mp4") as resp:
                assert resp.status == 404


async def test_open_event_clip_serves_what_is_recorded_so_far(tmp_path):
    """While the event is open, clip.mp4 is the growing file (not cached) and what it holds already plays."""
    async with recording(tmp_path, mode="events") as rig:
        await event_clip(rig, finish=False)
        async with serving(rig, ("door",)) as (base, _), aiohttp.ClientSession() as http:
            async def fetched_frames() -> int:
                async with http.get(f"{base}/api/events/ev1/clip.mp4") as resp:
                    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-cache"
                    assert resp.headers["X-Recording"] == "in-progress"
                    (tmp_path / "partial.mp4").write_bytes(await resp.read())
                found = probe(tmp_path / "partial.mp4")
                return found.frames if found else 0

            async with asyncio.timeout(20):
                while await fetched_frames() < 60:
                    await asyncio.sleep(0.1)


async def test_recordings_listing_and_export(tmp_path):
    """recordings?after=&before= lists the segments of a span; clip.mp4?start=&end= exports it; bad input is 400, unknown 404."""
    async with recording(tmp_path, mode="continuous", segment_s=2) as rig:
        await rig.feed("gate", T0, 8.0)
        rig.recorder.camera_offline("gate")
        await rig.settled("gate", count=4)
        async with serving(rig, ("gate", "idle")) as (base, _), aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/cameras/gate/recordings", params={"after": T0 + 1, "before": T0 + 5}) as resp:
                body = await resp.json()
            assert [r["start_time"] for r in body["recordings"]] == [T0, T0 + 2, T0 + 4]
            assert all(r["kind"] == "segment" and not r["in_progress"] for r in body["recordings"])
            async with http.get(f"{base}/api/cameras/gate/recordings") as resp:  # default: the last 24 h
                assert len((await resp.json())["recordings"]) == 4
            async with http.get(f"{base}/api/cameras/gate/clip.mp4", params={"start": T0 + 2.5, "end": T0 + 5.5}) as resp:
                assert resp.status == 200 and resp.content_type == "video/mp4"
                (tmp_path / "export.mp4").write_bytes(await resp.read())
            exported = probe(tmp_path / "export.mp4")
            assert exported is not None and exported.frames == 35 and exported.duration == pytest.approx(3.5, abs=0.01)
            for params, status in (({"start": "x", "end": T0}, 400), ({"start": T0}, 400), ({"start": T0, "end": T0}, 400),
                                   ({"start": T0, "end": T0 + 7200}, 400), ({"start": T0 + 100, "end": T0 + 110}, 404)):
                async with http.get(f"{base}/api/cameras/gate/clip.mp4", params=params) as resp:
                    assert resp.status == status, params
            async with http.get(f"{base}/api/cameras/ghost/recordings") as resp:
                assert resp.status == 404
            async with http.get(f"{base}/api/cameras/idle/recordings") as resp:
                assert resp.status == 200 and (await resp.json())["recordings"] == []


async def test_continuous_mode_event_clip_is_cut_from_segments(tmp_path):
    """In continuous mode an event's clip is an export of its span of segments (pre/post capture included)."""
    async with recording(tmp_path, mode="continuous", segment_s=4, pre_capture_s=2, post_capture_s=2) as rig:
        t = await rig.feed("door", T0, 5.0)
        rig.recorder.event_started("door", "ev1", T0 + 5.0)
        t = await rig.feed("door", t, 3.0, first=50)
        rig.recorder.event_ended("door", "ev1", T0 + 8.0)
        await rig.feed("door", t, 6.0, first=80)
        rig.recorder.camera_offline("door")
        await rig.settled("door")
        clip = await rig.recorder.clip_file("ev1")
        found = probe(clip.path)
        # [3, 10] asked; keyframes at 0, 2, 4, ... in each 4 s segment: [2, 10) exported
        assert found is not None and found.duration == pytest.approx(8.0, abs=0.01)
        assert clip.offset_s == pytest.approx(1.0)  # the clip starts 1 s into the export
        assert rig.index(rig.recorder.index.clip, "ev1")["clip_end"] == pytest.approx(T0 + 10.0)


async def test_open_events_clip_from_segments_is_the_same_bytes_for_the_range_requests_of_one_playback(tmp_path):
    """Continuous mode, event still open: requests within seconds of each other (a player's Range requests) get
    the same file, so the ranges fit together, although the recording grows in between."""
    async with recording(tmp_path, mode="continuous", segment_s=4, pre_capture_s=2, post_capture_s=2) as rig:
        t = await rig.feed("door", T0, 5.0)
        rig.recorder.event_started("door", "ev1", T0 + 5.0)
        t = await rig.feed("door", t, 3.0, first=50)
        async with serving(rig, ("door",)) as (base, _), aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/events/ev1/clip.mp4") as resp:
                assert resp.status == 200
                whole, etag = await resp.read(), resp.headers["ETag"]
            await rig.feed("door", t, 2.0, first=80)  # the recording grows
            async with http.get(f"{base}/api/events/ev1/clip.mp4", headers={"Range": "bytes=1000-"}) as resp:
                assert resp.status == 206 and resp.headers["ETag"] == etag
                assert await resp.read() == whole[1000:]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
async def test_chromium_plays_the_clip_and_seeks_to_its_middle(tmp_path):
    """Headless Chromium loads an event clip in <video>: duration is 8 + pre + post, it plays, and a seek to the middle
    lands there with a decoded frame (readyState >= 2), fetched with Range requests."""
    async with recording(tmp_path, mode="events") as rig:
        await event_clip(rig)
        async with serving(rig, ("door",)) as (base, ranges):
            async with chromium(f"{base}/") as browser:
                async with asyncio.timeout(30):
                    while not await browser.js("document.getElementById('v') !== null"):
                        await asyncio.sleep(0.05)  # the page is still loading
                    duration = await browser.js("""new Promise(done => {
                        const v = document.getElementById('v');
                        const check = () => v.error ? done('error ' + v.error.code + ' ' + v.error.message)
                                                    : v.readyState >= 1 ? done(v.duration) : setTimeout(check, 50);
                        check(); })""")
                    assert isinstance(duration, (int, float)), duration
                    assert duration == pytest.approx(18.0, abs=0.5)
                    played = await browser.js("""new Promise(async done => {
                        const v = document.getElementById('v');
                        await v.play();
                        const check = () => v.currentTime > 0.5 ? (v.pause(), done(v.currentTime)) : setTimeout(check, 50);
                        check(); })""")
                    assert played > 0.5
                    seek = await browser.js("""new Promise(done => {
                        const v = document.getElementById('v');
                        v.addEventListener('seeked', () => {
                            const check = () => v.readyState >= 2 ? done({t: v.currentTime, rs: v.readyState})
                                                                  : setTimeout(check, 50);
                            check(); }, {once: true});
                        v.currentTime = v.duration / 2; })""")
                assert seek["t"] == pytest.approx(duration / 2, abs=0.2) and seek["rs"] >= 2
                assert any(r is not None for r in ranges)  # the browser fetched by Range


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
async def test_chromium_plays_an_open_events_growing_clip(tmp_path):
    """While the event is open, Chromium plays the growing (fragmented) clip: what is recorded so far, seekable."""
    async with recording(tmp_path, mode="events") as rig:
        await event_clip(rig, finish=False)  # recording since T0 + 5, 13 s fed so far
        assert (await rig.recorder.clip_file("ev1")).in_progress
        async with serving(rig, ("door",)) as (base, _):
            async with chromium(f"{base}/") as browser:
                async with asyncio.timeout(30):
                    while not await browser.js("document.getElementById('v') !== null"):
                        await asyncio.sleep(0.05)
                    loaded = await browser.js("""new Promise(done => {
                        const v = document.getElementById('v');
                        const check = () => v.error ? done('error ' + v.error.code + ' ' + v.error.message)
                                                    : v.readyState >= 2 ? done(v.duration) : setTimeout(check, 50);
                        check(); })""")
                    assert isinstance(loaded, (int, float)) and 10.0 <= loaded <= 13.1, loaded
                    seek = await browser.js("""new Promise(done => {
                        const v = document.getElementById('v');
                        v.addEventListener('seeked', () => done({t: v.currentTime, rs: v.readyState}), {once: true});
                        v.currentTime = 5; })""")
                assert seek["t"] == pytest.approx(5.0, abs=0.1) and seek["rs"] >= 2
