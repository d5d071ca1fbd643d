"""The review timeline and the export dialog in headless Chromium, over real recordings.

A Recorder writes real H.264 segments of a camera ('gate': 150 s, a 60 s gap, 30 s more, labelled at
times 15 minutes ago); the recording routes are camserver's own (RecordingsApi over that Recorder),
the page's modules are the shipped static files. The browser runs in another time zone than the
machine (Asia/Kolkata, +5:30) so the local times shown are checked to be the browser's.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from browser import CHROMIUM, DESKTOP, PHONE, chromium
from camserver.record.encoder import KEYFRAME_S
from camserver.web.events import MAX_LIMIT
from camserver.web.recordings import RecordingsApi
from recordkit import duration, needs_ffmpeg, recording
from conftest import served_app

pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)"), needs_ffmpeg]

STATIC = Path(__file__).resolve().parent.parent / "camserver" / "web" / "static"
ZONE = "Asia/Kolkata"
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/app.css"></head><body><main id="main"><section class="view">
<section class="panel" id="root"><h2>Timeline</h2></section></section></main>
<script type="module">
import { createTimeline } from "/static/timeline.js";
const q = new URLSearchParams(location.search);
window.tl = createTimeline(document.getElementById("root"), { refreshMs: Number(q.get("refresh") || 15000) });
</script></body></html>"""


@asynccontextmanager
async def page_server(recorder: Any, cameras: tuple[str, ...], events: list[dict[str, Any]],
                      hits: list[str], html: str = PAGE) -> AsyncIterator[str]:
    """camserver's recording routes over `recorder`, /api/cameras and /api/events of `events`, the static files;
    `html` at /."""
    @web.middleware
    async def count(request: web.Request, handler: Any) -> Any:
        hits.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[count])
    RecordingsApi(recorder.clip_file, recorder.list_recordings, recorder.export, lambda c: c in cameras).add_routes(app)

    async def cams(_: web.Request) -> web.Response:
        return web.json_response([{"id": c} for c in cameras])

    async def evs(request: web.Request) -> web.Response:
        if not 1 <= int(request.query.get("limit", "50")) <= MAX_LIMIT:  # as the real route refuses
            raise web.HTTPBadRequest(text="limit out of range")
        camera = request.query.get("camera")
        after = float(request.query.get("after", 0))
        before = float(request.query.get("before", 1e12))
        return web.json_response({"events": [e for e in events if after <= e["start_time"] < before
                                                 and camera in (None, e["camera"])], "next_cursor": None})

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app.router.add_get("/api/cameras", cams)
    app.router.add_get("/api/events", evs)
    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC)
    async with served_app(app) as base:
        yield base


@asynccontextmanager
async def gate_recorded(tmp_path: Path) -> AsyncIterator[tuple[Any, float]]:
    """A recording rig with 'gate' recorded from t0 (15 minutes ago) for 150 s, then 60 s not, then 30 s."""
    t0 = float(int(time.time()) - 900)
    async with recording(tmp_path, mode="continuous", segment_s=30) as rig:
        t = await rig.feed("gate", t0, 150.0, fps=4)
        rig.recorder.camera_offline("gate")
        await rig.feed("gate", t0 + 210, 30.0, fps=4, first=t)
        rig.recorder.camera_offline("gate")
        rows = await rig.settled("gate")
        assert [r["start_time"] for r in rows][-1] == pytest.approx(t0 + 210)
        yield rig, t0


def local(t: float) -> str:
    """HH:MM:SS of t in the browser's time zone."""
    return datetime.fromtimestamp(t, ZoneInfo(ZONE)).strftime("%H:%M:%S")


async def x_of(browser: Any, selector: str, t: float) -> tuple[float, float]:
    """Viewport (x, y) of time t on the element `selector` (from the span the timeline shows now)."""
    box = await browser.js(f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
        el.scrollIntoView({{block: 'center'}}); const r = el.getBoundingClientRect();
        const d = document.querySelector('.timeline').dataset;
        return [r.left, r.width, r.top + r.height / 2, Number(d.from), Number(d.to)]; }})()""")
    left, width, y, t0, t1 = box
    return left + (t - t0) / (t1 - t0) * width, y


async def video_moment(browser: Any) -> dict[str, Any]:
    """The recording the player has loaded and the moment it shows, once it has seeked there."""
    return await browser.wait("""(() => { const v = document.querySelector('.tl-video');
        if (v.readyState < 1 || v.seeking) return null;
        return {start: Number(v.dataset.start), t: Number(v.dataset.start) + v.currentTime, src: v.currentSrc,
                playhead: Number(document.querySelector('.timeline').dataset.playhead)}; })()""",
                              timeout=30, what="the player to show the moment")


async def test_timeline_marks_scrubbing_and_a_two_minute_export_in_four_clicks(tmp_path):
    """A 13 s event is a mark >= 4 px wide at 24 h zoom with its label, local time and duration on hover;
    a click, a drag and the arrow keys play the recording covering that moment within 1 s; a 2-minute
    span is exported in 4 clicks (zoom, drag on the axis, Download, Save) as a file of the span's length
    within 1 s; screenshots at desktop and phone width."""
    async with gate_recorded(tmp_path) as (rig, t0):
        event = {"id": "ev13", "camera": "gate", "label": "person", "start_time": t0 + 20, "end_time": t0 + 33,
                 "score": 0.9, "entered_zones": []}
        hits: list[str] = []
        async with page_server(rig.recorder, ("gate", "yard"), [event], hits) as base, chromium() as browser:
            await browser.call("Emulation.setTimezoneOverride", timezoneId=ZONE)
            await browser.goto(f"{base}/")
            await browser.wait("document.querySelectorAll('[data-camera=gate] .tl-rec').length >= 2", timeout=20,
                               what="the recordings on the timeline")

            # gaps: the 60 s without recording is empty track between two bars (1 h zoom: ~20 px)
            edges = await browser.js("""[...document.querySelectorAll('[data-camera=gate] .tl-rec')]
                .map((b) => b.getBoundingClientRect()).map((r) => [r.left, r.right]).sort((a, b) => a[0] - b[0])""")
            gaps = [b[0] - a[1] for a, b in zip(edges, edges[1:])]
            assert max(gaps) > 10, edges
            await browser.screenshot("timeline-day", ready="!!document.querySelector('.tl-event')")

            # the 13 s event at 24 h zoom
            await browser.click(".tl-zoom[data-zoom='86400']")
            await browser.wait("document.querySelector(\".tl-zoom[data-zoom='86400']\").ariaPressed === 'true'")
            box = await browser.js("""(() => { const r = document.querySelector('.tl-event[data-id=ev13]')
                .getBoundingClientRect(); return [r.width, r.height, r.left + r.width / 2, r.top + r.height / 2]; })()""")
            assert box[0] >= 4 and box[1] >= 10, box
            await browser.mouse("mouseMoved", box[2], box[3], buttons=0)
            tip = await browser.wait("(() => { const t = document.querySelector('.tl-tip'); return !t.hidden && t.textContent; })()")
            assert "person" in tip and local(t0 + 20) in tip and "13 s" in tip, tip
            label = await browser.js("document.querySelector('.tl-event[data-id=ev13]').getAttribute('aria-label')")
            assert local(t0 + 20) in label and "13 s" in label
            await browser.screenshot("timeline-hover", sizes=(DESKTOP,))
            await browser.viewport(PHONE)
            await browser.js("document.querySelector('.tl-event[data-id=ev13]').focus()")
            await browser.screenshot("timeline-hover-focus", sizes=(PHONE,),
                                     ready="!document.querySelector('.tl-tip').hidden")
            await browser.mouse("mouseMoved", 5, 5, buttons=0)
            # a click on the mark plays the event
            await browser.click(".tl-event[data-id=ev13]")
            seen = await video_moment(browser)
            assert seen["start"] == pytest.approx(t0) and abs(seen["t"] - (t0 + 20)) < 1.0, seen

            # scrubbing at 1 h zoom: a click, then a drag into the second recording, then the arrow keys
            clicks = 0
            await browser.click(".tl-zoom[data-zoom='3600']")
            clicks += 1
            await browser.wait("document.querySelector(\".tl-zoom[data-zoom='3600']\").ariaPressed === 'true'")
            x, y = await x_of(browser, "[data-camera=gate] .tl-track", t0 + 100)
            await browser.click_at(x, y)
            seen = await video_moment(browser)
            assert abs(seen["playhead"] - (t0 + 100)) < 2.0, seen  # where the pointer was (the span moves with now)
            assert seen["start"] == pytest.approx(t0 + 90) and abs(seen["t"] - seen["playhead"]) < 1.0, seen
            start = await x_of(browser, "[data-camera=gate] .tl-track", t0 + 40)
            stop = await x_of(browser, "[data-camera=gate] .tl-track", t0 + 225)
            await browser.drag(start, stop, steps=8)
            seen = await video_moment(browser)
            assert seen["start"] == pytest.approx(t0 + 210) and abs(seen["t"] - seen["playhead"]) < 1.0, seen
            assert abs(seen["playhead"] - (t0 + 225)) < 2.0, seen
            before = seen["playhead"]
            await browser.key("ArrowLeft")  # 1% of the hour: 36 s back, into the gap: nothing recorded then
            await browser.wait(f"Number(document.querySelector('.timeline').dataset.playhead) < {before - 30}")
            assert "nothing recorded" in await browser.js("document.querySelector('.tl-caption').textContent")
            await browser.key("ArrowLeft")  # still the gap
            await browser.key("ArrowLeft")  # back in the first span's last-but-one segment
            seen = await video_moment(browser)
            assert abs(seen["playhead"] - (before - 108)) < 0.5 and seen["start"] == pytest.approx(t0 + 90), seen
            assert abs(seen["t"] - seen["playhead"]) < 1.0, seen

            # the export: drag 2 minutes on the axis (the dialog opens), Download, then Save
            await browser.call("Page.setDownloadBehavior", behavior="allow", downloadPath=str(tmp_path / "dl"))
            a = await x_of(browser, ".tl-axis", t0 + 10)
            b = await x_of(browser, ".tl-axis", t0 + 130)
            await browser.drag(a, b, steps=6)
            clicks += 1
            await browser.wait("!document.querySelector('.export-dialog').hidden", what="the export dialog")
            span = await browser.js("""[document.getElementById('ex-start').value, document.getElementById('ex-end').value]""")
            picked = [datetime.fromisoformat(v).replace(tzinfo=ZoneInfo(ZONE)).timestamp() for v in span]
            assert abs(picked[0] - (t0 + 10)) < 3 and abs(picked[1] - (t0 + 130)) < 3, (span, t0)
            await browser.click(".ex-download")
            clicks += 1
            await browser.wait("!document.querySelector('.ex-link').hidden", timeout=60, what="the export")
            assert "Ready" in await browser.js("document.querySelector('.ex-status').textContent")
            await browser.screenshot("timeline-export", ready="!document.querySelector('.ex-link').hidden")
            await browser.click(".ex-link")
            clicks += 1
            assert clicks <= 4
            async with asyncio.timeout(30):
                while not (files := [p for p in (tmp_path / "dl").glob("*.mp4")]):
                    await asyncio.sleep(0.2)
            saved = files[0]
            await asyncio.sleep(0.5)
            length = duration(saved)
            # a remux starts at the last keyframe at or before the start (record/export.py): up to KEYFRAME_S early
            assert -0.5 < length - (picked[1] - picked[0]) < KEYFRAME_S + 0.5, (length, picked)
            # the same bytes as the link holds
            blob = await browser.js("""fetch(document.querySelector('.ex-link').href).then((r) => r.arrayBuffer())
                .then((b) => b.byteLength)""")
            assert blob == saved.stat().st_size

            # preview plays the span
            await browser.click(".ex-preview")
            dur = await browser.wait("""(() => { const v = document.querySelector('.tl-video');
                return v.dataset.span === '1' && v.readyState >= 1 && v.duration; })()""", timeout=30)
            assert abs(dur - (picked[1] - picked[0])) < 1.0
            assert not browser.errors, browser.errors


async def test_empty_day_and_the_panel_refreshes_while_visible_only(tmp_path):
    """With nothing recorded, the timeline says so per row; it reloads every refresh interval while the page is
    visible, not at all while hidden, and at once when it is shown again."""
    async with recording(tmp_path, mode="continuous", segment_s=30) as rig:
        hits: list[str] = []
        async with page_server(rig.recorder, ("gate",), [], hits) as base, chromium() as browser:
            await browser.goto(f"{base}/?refresh=500")
            await browser.wait("Number(document.querySelector('.timeline').dataset.loaded) >= 1")
            assert "Nothing recorded" in await browser.js("document.querySelector('[data-camera=gate] .tl-track').textContent")
            await browser.screenshot("timeline-empty")
            rec = lambda: sum(p.endswith("/recordings") for p in hits)  # noqa: E731
            first = rec()
            await asyncio.sleep(3.0)
            visible = rec() - first
            assert 2 <= visible <= 8, visible  # every 0.5 s at most, one at a time
            await browser.js("""Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
                document.dispatchEvent(new Event('visibilitychange'))""")
            await asyncio.sleep(1.0)  # one already scheduled may still go
            held = rec()
            await asyncio.sleep(3.0)
            assert rec() == held  # nothing while hidden
            await browser.js("""Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
                document.dispatchEvent(new Event('visibilitychange'))""")
            async with asyncio.timeout(5):
                while rec() == held:
                    await asyncio.sleep(0.1)
            assert not browser.errors, browser.errors
