"""The camera view's timeline (timeline.js for one camera) and the timeline's tip at phone width, in
headless Chromium over real recordings (the same rig as test_browser_timeline: 'gate' recorded 150 s,
a 60 s gap, 30 s more, labelled 15 minutes ago). The page is the shipped camera view module (camera.js)
mounted as the app mounts it. Screenshots: camera-timeline*.png (test-artifacts/screenshots/)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from browser import CHROMIUM, PHONE, SCREENSHOTS, chromium
from recordkit import needs_ffmpeg
from test_browser_timeline import ZONE, gate_recorded, local, page_server, video_moment, x_of

pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)"), needs_ffmpeg]

CAMERA_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/app.css"></head><body><main id="main"></main>
<script type="module">
import { create } from "/static/camera.js";
window.view = create(document.getElementById("main"), { arg: "gate" }, { info: { events_enabled: true } });
</script></body></html>"""

TIP = """(() => { const t = document.querySelector('.tl-tip'); if (t.hidden) return null;
    const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    return {tip: box(t), text: t.textContent, track: box(document.querySelector('[data-camera=gate] .tl-track')),
            controls: [...document.querySelectorAll('.tl-toolbar, .tl-span')].map(box),
            mark: box(document.querySelector('.tl-event[data-id=ev13]')),
            view: [document.documentElement.clientWidth, window.innerHeight]}; })()"""

# the middle of the 13 s mark once it is scrolled into view and is what a pointer there would hit
MARK_AT = """(() => { const el = document.querySelector('.tl-event[data-id=ev13]'); if (!el) return null;
    el.scrollIntoView({block: 'center', behavior: 'instant'}); const r = el.getBoundingClientRect();
    const x = r.left + r.width / 2, y = r.top + r.height / 2;
    return document.elementFromPoint(x, y) === el ? [x, y] : null; })()"""


async def shot(browser: Any, name: str) -> None:
    """The viewport as it is now (scrolled where the timeline is, unlike browser.screenshot's top of the page)."""
    await browser.js("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    size = await browser.js("[window.innerWidth, window.innerHeight]")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    data = (await browser.call("Page.captureScreenshot", format="png"))["data"]
    (SCREENSHOTS / f"{name}-{size[0]}x{size[1]}.png").write_bytes(base64.b64decode(data))


def overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_tip(seen: dict[str, Any]) -> None:
    """The tip inside the viewport, above the marks' track (so clear of the playhead), clear of the controls."""
    left, top, right, bottom = seen["tip"]
    width, height = seen["view"]
    assert 0 <= left and right <= width and 0 <= top and bottom <= height, seen
    assert bottom <= seen["track"][1] + 0.5, ("the tip covers the marks or the playhead", seen)
    for box in seen["controls"]:
        assert not overlap(seen["tip"], box), ("the tip covers the controls", seen)


async def test_camera_view_timeline_marks_gaps_scrub_export_and_the_tip_at_phone_width(tmp_path):
    """The camera view has the scrubbable timeline for its camera at 24 h zoom: the 13 s event as a mark
    >= 4 px wide with its tip, the 60 s recording gap empty, a click on the track plays the recording
    there, the export dialog opens from it; at 390x844 a tap's tip stays inside the viewport, above the
    track and clear of the controls row. Only this camera's events are asked for."""
    async with gate_recorded(tmp_path) as (rig, t0):
        events = [{"id": "ev13", "camera": "gate", "label": "person", "start_time": t0 + 20, "end_time": t0 + 33,
                   "score": 0.9, "entered_zones": []},
                  {"id": "other", "camera": "yard", "label": "car", "start_time": t0 + 60, "end_time": t0 + 70,
                   "score": 0.9, "entered_zones": []}]
        hits: list[str] = []
        async with page_server(rig.recorder, ("gate", "yard"), events, hits, CAMERA_PAGE) as base, \
                chromium() as browser:
            await browser.call("Emulation.setTimezoneOverride", timezoneId=ZONE)
            await browser.goto(f"{base}/")
            await browser.wait("document.querySelectorAll('.view-camera [data-camera=gate] .tl-rec').length >= 2 && "
                               "!!document.querySelector('.tl-event[data-id=ev13]')", timeout=30,
                               what="the camera view's timeline with its recordings and event")
            assert await browser.js("document.querySelector(\".tl-zoom[data-zoom='86400']\").ariaPressed") == "true"
            assert await browser.js("document.querySelectorAll('.tl-row').length") == 1  # this camera only
            assert not await browser.js("document.querySelector('.tl-event[data-id=other]')")
            box = await browser.js("""(() => { const r = document.querySelector('.tl-event[data-id=ev13]')
                .getBoundingClientRect(); return [r.width, r.left + r.width / 2, r.top + r.height / 2]; })()""")
            assert box[0] >= 4, box
            # the gap: at 24 h, 60 s of 86400 on a ~900 px track is under a pixel, so it is checked at 1 h
            await browser.click(".tl-zoom[data-zoom='3600']")
            await browser.wait("document.querySelector(\".tl-zoom[data-zoom='3600']\").ariaPressed === 'true'")
            edges = await browser.js("""[...document.querySelectorAll('[data-camera=gate] .tl-rec')]
                .map((b) => b.getBoundingClientRect()).map((r) => [r.left, r.right]).sort((a, b) => a[0] - b[0])""")
            assert max(b[0] - a[1] for a, b in zip(edges, edges[1:])) > 10, edges
            await browser.click(".tl-zoom[data-zoom='86400']")
            await browser.wait("document.querySelector(\".tl-zoom[data-zoom='86400']\").ariaPressed === 'true'")
            box = await browser.wait(MARK_AT, what="the mark in view, at rest")
            await browser.mouse("mouseMoved", box[0], box[1], buttons=0)
            seen = await browser.wait(TIP, what="the tip on hover")
            assert "person" in seen["text"] and local(t0 + 20) in seen["text"] and "13 s" in seen["text"], seen
            check_tip(seen)
            await shot(browser, "camera-timeline-hover")
            await browser.mouse("mouseMoved", 5, 5, buttons=0)

            # click/scrub on the track plays the recording there
            await browser.click(".tl-zoom[data-zoom='3600']")
            await browser.wait("document.querySelector(\".tl-zoom[data-zoom='3600']\").ariaPressed === 'true'")
            x, y = await x_of(browser, "[data-camera=gate] .tl-track", t0 + 100)
            await browser.click_at(x, y)
            seen = await video_moment(browser)
            assert abs(seen["playhead"] - (t0 + 100)) < 2.0 and abs(seen["t"] - seen["playhead"]) < 1.0, seen
            await browser.js("document.querySelector('.view-camera .timeline').scrollIntoView({block: 'start', behavior: 'instant'})")
            await shot(browser, "camera-timeline")

            # the export dialog from the timeline, for this camera
            await browser.click(".tl-export-btn")
            await browser.wait("!document.querySelector('.export-dialog').hidden", what="the export dialog")
            await browser.js("document.querySelector('.export-dialog').scrollIntoView({block: 'center', behavior: 'instant'})")
            await shot(browser, "camera-timeline-export")
            await browser.click(".ex-close")
            await browser.wait("document.querySelector('.export-dialog').hidden", what="the dialog closed")

            # at phone width: a tap on the mark (24 h zoom, the mark near the right edge)
            await browser.viewport(PHONE)
            await browser.call("Emulation.setTouchEmulationEnabled", enabled=True, maxTouchPoints=1)
            loaded = await browser.js("document.querySelector('.timeline').dataset.loaded")
            await browser.click(".tl-zoom[data-zoom='86400']")
            await browser.wait("document.querySelector(\".tl-zoom[data-zoom='86400']\").ariaPressed === 'true'")
            await browser.wait(f"document.querySelector('.timeline').dataset.loaded !== '{loaded}'", what="the 24 h span loaded")
            box = await browser.wait(MARK_AT, what="the mark in view, at rest")
            await browser.call("Input.dispatchTouchEvent", type="touchStart", touchPoints=[{"x": box[0], "y": box[1]}])
            await browser.call("Input.dispatchTouchEvent", type="touchEnd", touchPoints=[])
            check_tip(await browser.wait(TIP, what="the tip at phone width"))
            await shot(browser, "camera-timeline-tip")
            await browser.click(".tl-export-btn")
            await browser.wait("!document.querySelector('.export-dialog').hidden", what="the export dialog at phone width")
            await browser.js("document.querySelector('.export-dialog').scrollIntoView({block: 'start', behavior: 'instant'})")
            await shot(browser, "camera-timeline-export")
            assert any(h == "/api/events" for h in hits)
            assert not browser.errors, browser.errors
