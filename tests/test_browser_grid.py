"""The live grid in headless Chromium through the real server: 4, 9 and 16 cameras fit a 1400x1000
window without scrolling, every tile plays over the one WebSocket at its camera's rate (frames
counted as the page draws them), and a reconnect of the event feed refreshes the review list.
Screenshots at 1400x1000 and 390x844 go to test-artifacts/screenshots/."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack

import pytest
from browser import CHROMIUM, DESKTOP, chromium
from conftest import (
    FakeDetector,
    connect_camera,
    feeding,
    make_config,
    running_server,
    tagged_jpeg,
)
from test_browser import clean, stored_event

from camserver.app import CamServer

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")

DRAWN = "JSON.stringify([...document.querySelectorAll('.tile img')].map(i => Number(i.dataset.drawn || 0)))"
# what lies below the window: nothing, when the grid fits
FITS = """(() => { const h = innerHeight; const tiles = [...document.querySelectorAll('.tile')];
  return {scroll: document.scrollingElement.scrollHeight - h, bottom: Math.max(...tiles.map(t => t.getBoundingClientRect().bottom)) - h,
          frame: Math.min(...tiles.map(t => t.querySelector('.frame').getBoundingClientRect().height))}; })()"""
MIN_FPS = 9.0  # the target: 10 fps cameras, every tile at 9 or more


@pytest.mark.parametrize("n", [4, 9, 16])
async def test_grid_fits_the_window_and_every_tile_plays_at_the_camera_rate(n):
    """n cameras at 10 fps: the grid has ceil(sqrt(n)) columns and no scrolling at 1400x1000; over 5 s
    every tile draws >= 9 frames a second, through one WebSocket and no MJPEG stream."""
    ids = [f"cam-{i:02d}" for i in range(1, n + 1)]
    async with running_server(None, cameras={"ids": ids}) as srv, AsyncExitStack() as stack:
        feeds = []
        for cid in ids:
            cam = await connect_camera(srv.ws(cid))
            stack.push_async_callback(cam.close)
            feeds.append(await stack.enter_async_context(feeding(cam, fps=10)))
        browser = await stack.enter_async_context(chromium(f"{srv.http}/"))
        await browser.wait(f"(() => {{ const d = {DRAWN}; return JSON.parse(d).length === {n} && JSON.parse(d).every(x => x > 3); }})()",
                           timeout=30, what=f"{n} tiles drawing")
        cols = await browser.js("getComputedStyle(document.querySelector('.grid')).gridTemplateColumns.split(' ').length")
        assert cols == {4: 2, 9: 3, 16: 4}[n]
        fits = await browser.js(FITS)
        assert fits["scroll"] <= 0 and fits["bottom"] <= 0, f"the grid does not fit 1400x1000: {fits}"
        assert fits["frame"] >= 80, fits
        before, sent = json.loads(await browser.js(DRAWN)), [f.sent for f in feeds]
        start = time.monotonic()
        await asyncio.sleep(5)
        after = json.loads(await browser.js(DRAWN))
        elapsed = time.monotonic() - start
        rates = [(b - a) / elapsed for a, b in zip(before, after)]
        # on a loaded machine the simulated cameras (this process) send below 10 fps: each tile must
        # then draw what its camera sent, less at most one frame a second
        camera_rates = [(f.sent - s) / elapsed for f, s in zip(feeds, sent)]
        print(f"{n} cameras: drawn fps per tile min {min(rates):.1f} max {max(rates):.1f}; "
              f"cameras sent {min(camera_rates):.1f}-{max(camera_rates):.1f} fps")
        floor = [min(MIN_FPS, c - 1.0) for c in camera_rates]
        assert all(r >= f for r, f in zip(rates, floor)), \
            f"drawn fps per tile {[round(r, 1) for r in rates]}, cameras sent {[round(c, 1) for c in camera_rates]}"
        shown = await browser.js("[...document.querySelectorAll('.tile-fps')].map(f => parseFloat(f.textContent))")
        assert all(abs(s - r) <= 3 for s, r in zip(shown, rates)), (shown, rates)
        viewer = srv.server.viewer_app
        assert len(viewer.grid.connections) == 1, "one connection carries every tile"
        assert viewer.viewers_total == 2, "the grid's WebSocket and the event feed, no MJPEG stream"
        await browser.screenshot(f"live-grid-{n}", ready="[...document.querySelectorAll('.tile img')].every(i => i.naturalWidth)")
        await browser.viewport(DESKTOP)
        if n == 4:  # the Live view's rate menu caps every tile
            await browser.js("(() => { const s = document.querySelector('.rate-menu'); s.value = '2'; "
                             "s.dispatchEvent(new Event('change')); })()")
            await asyncio.sleep(1.5)
            before = json.loads(await browser.js(DRAWN))
            await asyncio.sleep(4)
            after = json.loads(await browser.js(DRAWN))
            capped = [(b - a) / 4 for a, b in zip(before, after)]
            assert all(1.2 <= r <= 3.0 for r in capped), f"with 2 fps chosen: {capped}"
            assert await browser.js("localStorage.getItem('camserver.grid.fps')") == "2"
        clean(browser)


async def test_hidden_tiles_get_no_frames():
    """On a phone the grid is one column: tiles scrolled out of view are not subscribed to."""
    ids = [f"cam-{i:02d}" for i in range(1, 7)]
    async with running_server(None, cameras={"ids": ids}) as srv, AsyncExitStack() as stack:
        for cid in ids:
            cam = await connect_camera(srv.ws(cid))
            stack.push_async_callback(cam.close)
            await stack.enter_async_context(feeding(cam, fps=10))
        browser = await stack.enter_async_context(chromium(f"{srv.http}/", size=(390, 844)))
        await browser.wait(f"JSON.parse({DRAWN})[0] > 3", timeout=30, what="the first tile drawing")
        viewer = srv.server.viewer_app
        watched = [viewer.viewers_of(cid) for cid in ids]
        assert watched[0] == 1 and watched[-1] == 0, watched
        last = json.loads(await browser.js(DRAWN))[-1]
        await asyncio.sleep(1.5)
        assert json.loads(await browser.js(DRAWN))[-1] == last, "a tile out of view draws nothing"
        await browser.js("document.querySelectorAll('.tile')[5].scrollIntoView()")
        await browser.wait(f"JSON.parse({DRAWN})[5] > {last + 3}", timeout=15, what="the last tile playing once scrolled to")
        clean(browser)


async def test_a_feed_reconnect_refreshes_the_review_list():
    """An event saved while the feed was away (as across a restart) appears in review once the feed
    reconnects (here: the server ends the stream after http.event_stream_max_s), without a reload."""
    server = CamServer(make_config(http={"event_stream_max_s": 3.0}), detector_factory=lambda: FakeDetector())
    async with server, AsyncExitStack() as stack:
        base = f"http://127.0.0.1:{server.http_port}"
        now = time.time()
        first = stored_event(1, now - 600)
        await server.database.run(server.events.store.save, first, tagged_jpeg(1, 1), now)
        browser = await stack.enter_async_context(chromium(f"{base}/#/review"))
        await browser.wait("document.querySelectorAll('.event-card').length === 1", what="the one event")
        missed = stored_event(2, now - 300)  # not through the feed: nothing tells the page
        await server.database.run(server.events.store.save, missed, tagged_jpeg(1, 2), now)
        await browser.wait(f"document.querySelector('.event-card[data-id={json.dumps(missed['id'])}]') !== null "
                           "|| [...document.querySelectorAll('.event-card')].length === 2", timeout=15,
                           what="the event saved meanwhile, after the feed reconnected")
        assert await browser.js("document.querySelectorAll('.event-card').length") == 2
        clean(browser)


async def test_the_recordings_panel_refreshes_while_open():
    """The camera view's recordings list grows while the page stays open (2 s segments; the list is
    asked for again every 15 s), without a reload."""
    import cv2

    from camserver.sim.scenes import make_scene

    frames = [cv2.imencode(".jpg", make_scene(i, 320, 240))[1].tobytes() for i in range(20)]
    async with running_server(FakeDetector(), record={"mode": "continuous", "segment_s": 2},
                              cameras={"ids": ["porch"]}) as srv, AsyncExitStack() as stack:
        cam = await connect_camera(srv.ws("porch"))
        stack.push_async_callback(cam.close)
        stop = asyncio.Event()

        async def send() -> None:
            i = 0
            while not stop.is_set():
                await cam.send(frames[i % len(frames)])
                i += 1
                await asyncio.sleep(0.1)

        task = asyncio.create_task(send())
        stack.push_async_callback(lambda: task)
        stack.callback(stop.set)
        items = "document.querySelectorAll('[aria-labelledby=rec-title] li a').length"
        browser = await stack.enter_async_context(chromium(f"{srv.http}/#/camera/porch"))
        first = await browser.wait(f"{items} >= 1 && {items}", timeout=20, what="the first recordings")
        await browser.wait(f"{items} > {first}", timeout=25, what="the list to grow while the page is open")
        clean(browser)
