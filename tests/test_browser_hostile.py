"""The page with hostile strings, in headless Chromium through the real server: a 10 KB label, a label
starting with U+202E (right-to-left override), and a board status whose figures are not numbers.
Screenshots (hostile-*) at 1400x1000 and 390x844 go to test-artifacts/screenshots/."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import pytest

from browser import CHROMIUM, DESKTOP, PHONE, chromium
from camserver.detect import Detection
from conftest import FAKE_BOX, FakeDetector, connect_camera, feeding, running_server

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")

LONG = "W" * 10240  # a custom model's class name, or the inference service's metadata
RTL = "\u202eperson"  # U+202E: everything after it, to the end of the line, would read right to left
HOSTILE_STATUS = {"type": "status", "fps_sent": "fast", "free_heap": "lots", "rssi": "strong", "reconnects": {"a": 1},
                  "frames_sent": [1], "frame_size": "VGA", "quality": 12, "max_fps": 10.0,
                  "settings": {"brightness": "<b>2</b>", "lamp": {"on": True}, "contrast": 1e308}}

# how wide the page is, against the viewport; and any "NaN", "undefined" or "[object Object]" shown
LAYOUT = """JSON.stringify({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
  widest: Math.max(...[...document.querySelectorAll('main *')].map((el) => el.getBoundingClientRect().right)),
  junk: (document.body.innerText.match(/NaN|undefined|\\[object Object\\]/g) || [])})"""

# whether the text after the U+202E label still reads left to right: the "%" of its score to the right of its "8"
ORDER = """(() => {
  const walker = document.createTreeWalker(document.querySelector('.detections'), NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const i = node.data.indexOf('80%');
    if (i < 0) continue;
    const at = (k) => { const r = document.createRange(); r.setStart(node, k); r.setEnd(node, k + 1); return r.getBoundingClientRect().left; };
    return at(i + 2) > at(i);
  }
  return null;
})()"""


class HostileLabels(FakeDetector):
    """Two objects in every frame: one with a 10 KB class name, one whose name starts with U+202E."""

    def detect(self, images) -> list[list[Detection]]:
        super().detect(images)
        box = tuple(map(float, FAKE_BOX))
        return [[Detection(0, LONG, 0.9, box), Detection(1, RTL, 0.8, box)] for _ in images]


async def layout(browser) -> dict:
    """The page's width and any junk text it shows."""
    return json.loads(await browser.js(LAYOUT))


async def test_hostile_labels_and_status_keep_the_layout_and_show_no_nan():
    """With a 10 KB label, a U+202E label and a status of non-numbers: the live grid, camera view and review
    stay within the viewport at desktop and phone width, the text after the U+202E label keeps its order, the
    board's figures show "—" (not "NaN B" or "NaN fps"), and the reported settings show no "[object Object]"."""
    async with running_server(HostileLabels(), events={"labels": ["*"]}) as srv, AsyncExitStack() as stack:
        cam = await connect_camera(srv.ws("porch"))
        stack.push_async_callback(cam.close)
        await cam.send(json.dumps({"type": "hello", "camera_id": "porch", "firmware": "1.1.0"}))
        await cam.send(json.dumps(HOSTILE_STATUS))
        await stack.enter_async_context(feeding(cam, fps=8))
        browser = await stack.enter_async_context(chromium(f"{srv.http}/#/camera/porch"))
        await browser.wait("(document.querySelector('.detections') || {}).textContent?.includes('80%')",
                           what="what is detected now")
        await browser.wait("document.querySelectorAll('.mini-events li').length >= 2", what="the recent events")
        await browser.wait("!!document.getElementById('set-lamp')", what="the settings panel")
        await browser.screenshot("hostile-camera", ready="document.querySelector('.frame-large img').naturalWidth > 0")
        for size in (DESKTOP, PHONE):
            await browser.viewport(size)
            await browser.js("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
            shown = await layout(browser)
            assert shown["scroll"] <= shown["inner"], (size, shown)
            assert shown["widest"] <= shown["inner"] + 1, (size, shown)
            assert shown["junk"] == [], (size, shown)
            assert await browser.js(ORDER) is True, "the score after the U+202E label reads right to left"
        figures = json.loads(await browser.js("""JSON.stringify(Object.fromEntries([...document.querySelectorAll('.figures dt')]
            .map((dt) => [dt.textContent, dt.nextElementSibling.textContent])))"""))
        assert [figures[k] for k in ("Free heap", "Board sends", "Signal", "Reconnects")] == ["—"] * 4, figures

        await browser.js("location.hash = '#/live'")
        await browser.wait("(document.querySelector('.tile-event') || {}).textContent?.length > 0", what="the tile's event")
        await browser.screenshot("hostile-live", ready="document.querySelectorAll('.tile img').length === 1")
        for size in (DESKTOP, PHONE):
            await browser.viewport(size)
            shown = await layout(browser)
            assert shown["scroll"] <= shown["inner"] and shown["junk"] == [], (size, shown)

        await browser.js("location.hash = '#/review'")
        await browser.wait("document.querySelectorAll('.event-card').length >= 2", what="the event cards")
        await browser.wait("document.querySelectorAll('#f-label option').length >= 3", what="the label filter")
        await browser.screenshot("hostile-review")
        for size in (DESKTOP, PHONE):
            await browser.viewport(size)
            shown = await layout(browser)
            assert shown["scroll"] <= shown["inner"] and shown["junk"] == [], (size, shown)
        await browser.click(".event-card a")
        await browser.wait("!!document.querySelector('dialog[open] .lb-details')", what="the lightbox")
        await browser.screenshot("hostile-lightbox")
        for size in (DESKTOP, PHONE):
            await browser.viewport(size)
            shown = await layout(browser)
            assert shown["scroll"] <= shown["inner"] and shown["junk"] == [], (size, shown)
        assert browser.errors == [], browser.errors
