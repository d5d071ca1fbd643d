"""The page in headless Chromium through the real server: live grid, camera view, review with live
updates and the lightbox, the zone editor, login, the unreachable banner, the feature-detected
panels. Screenshots of every view at 1400x1000 and 390x844 go to test-artifacts/screenshots/
(CAMSERVER_SCREENSHOTS overrides it)."""

from __future__ import annotations

import asyncio
import json
import time
import tomllib
from contextlib import AsyncExitStack

import aiohttp
import pytest

from browser import CHROMIUM, chromium
from camserver.app import CamServer
from camserver.config import from_mapping
from camserver.events.rules import Event
from conftest import FakeDetector, ScriptedDetector, connect_camera, feeding, make_config, running_server, tagged_jpeg, wait_for

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")

STEPS = {"camera": "porch", "name": "steps", "points": [[0.1, 0.5], [0.5, 0.5], [0.5, 0.95], [0.1, 0.95]]}
TILES = """JSON.stringify([...document.querySelectorAll('.tile')].map(t => ({
  id: t.dataset.camera, state: t.querySelector('.badge').textContent, fps: t.querySelector('.tile-fps').textContent,
  src: t.querySelector('img').getAttribute('src'), w: t.querySelector('img').naturalWidth,
  event: t.querySelector('.tile-event').textContent})))"""


async def tiles(browser) -> list[dict]:
    """The live grid's tiles as the page shows them."""
    return json.loads(await browser.js(TILES))


def clean(browser) -> None:
    """No console errors, exceptions or failed loads; every input labelled, every image with alt text."""
    assert browser.errors == [], browser.errors
    assert browser.network_errors == [], browser.network_errors


async def accessible(browser) -> None:
    """The Lighthouse-style basics on the current view."""
    audit = await browser.audit()
    assert audit["inputs"] == [], f"inputs without a label: {audit['inputs']}"
    assert audit["images"] == [], f"images without alt: {audit['images']}"
    assert audit["buttons"] == [], f"buttons or links without a name: {audit['buttons']}"
    assert audit["current"] == 1, "the navigation marks the current view with aria-current"
    assert audit["tables"] == 0, "every table has headers"


async def test_live_grid_and_camera_view(tmp_path):
    """Three cameras play live in the grid; a tile opens the camera view (stream, boxes on/off, zones,
    figures), and leaving a view closes its streams."""
    async with running_server(FakeDetector(), events={"zones": [STEPS]}) as srv, AsyncExitStack() as stack:
        names = ("porch", "garage", "yard")
        for name in names:
            cam = await connect_camera(srv.ws(name))
            stack.push_async_callback(cam.close)
            await stack.enter_async_context(feeding(cam, fps=8))
        browser = await stack.enter_async_context(chromium(f"{srv.http}/"))
        await browser.wait(f"""(() => {{ const t = {TILES.replace('JSON.stringify(', '(')};
            return t.length === 3 && t.every(x => x.w === 320 && x.state === 'live' && x.fps.endsWith('fps')); }})()""",
                           what="three live tiles")
        shown = await tiles(browser)
        assert [t["id"] for t in shown] == list(names)
        assert all(t["src"].startswith("blob:") for t in shown), "the tiles play over the grid's WebSocket"
        await wait_for(lambda: all(srv.server.viewer_app.viewers_of(n) == 1 for n in names), what="one stream per tile")
        assert await browser.layout_shift() < 0.1, "pictures load into boxes of their size"
        await accessible(browser)
        await browser.screenshot("live", ready="document.querySelectorAll('.tile img').length === 3")

        await browser.click(".tile[data-camera=porch] .tile-name a")
        await browser.wait("location.hash === '#/camera/porch' && document.querySelector('.frame-large img').naturalWidth === 320",
                           what="the camera view's stream")
        await browser.wait("document.querySelector('.detections').textContent.includes('fake 90%')", what="what is detected now")
        figures = await browser.js("document.querySelector('.figures').innerText")
        for label in ("Frames in", "Frames out", "Inference", "Dropped", "Viewers", "Signal", "Free heap"):
            assert label in figures
        # the grid's streams closed with the grid: only the camera view watches porch now
        await wait_for(lambda: [srv.server.viewer_app.viewers_of(n) for n in ("porch", "garage", "yard")] == [1, 0, 0],
                       what="the grid's streams to close")
        assert srv.server.viewer_app.watched("porch")
        await browser.click("label[for=opt-boxes]")
        await browser.wait("document.querySelector('.frame-large img').getAttribute('src').includes('raw=1')")
        await wait_for(lambda: not srv.server.viewer_app.watched("porch") and srv.server.viewer_app.viewers_of("porch") == 1,
                       what="the raw stream to replace the annotated one")
        await browser.click("label[for=opt-zones]")
        zone = await browser.wait("""(() => { const o = document.querySelector('.zone-overlay');
            return !o.hidden && o.querySelectorAll('polygon').length === 1 && o.querySelector('.zone-name').textContent; })()""")
        assert zone == "steps"
        await accessible(browser)
        await browser.screenshot("camera", ready="document.querySelector('.frame-large img').naturalWidth > 0")
        await browser.screenshot("camera-dark", ready="document.querySelector('.frame-large img').naturalWidth > 0", dark=True)
        await browser.click("nav a[data-nav=live]")
        await browser.wait("document.querySelectorAll('.tile').length === 3")
        await wait_for(lambda: all(srv.server.viewer_app.viewers_of(n) == 1 for n in names), what="the grid's streams again")
        await browser.js("location.hash = '#/camera/nope'")
        await browser.wait("document.querySelector('.state-error').innerText.includes('No camera “nope”')", what="the error state")
        clean(browser)


async def test_empty_states_and_many_cameras_share_one_connection():
    """With no camera the grid says how to connect one and review says "no events yet"; six waiting
    cameras show their placeholders over the grid's one WebSocket, not one connection each."""
    async with running_server(FakeDetector()) as srv, chromium(f"{srv.http}/") as browser:
        text = await browser.wait("document.querySelector('.state-empty') && document.querySelector('.state-empty').innerText")
        assert "No camera yet" in text and "/ws/<camera_id>" in text
        await browser.screenshot("live-empty")
        await browser.js("location.hash = '#/review'")
        text = await browser.wait("document.querySelector('.state-empty') && document.querySelector('.state-empty').innerText")
        assert "No events yet" in text
        await browser.screenshot("review-empty")
        clean(browser)
    ids = [f"cam-{i}" for i in range(1, 7)]
    async with running_server(FakeDetector(), cameras={"ids": ids}) as srv, chromium(f"{srv.http}/") as browser:
        await browser.wait(f"""(() => {{ const t = {TILES.replace('JSON.stringify(', '(')};
            return t.length === 6 && t.every(x => x.w === 640 && x.state === 'waiting'); }})()""", what="six waiting tiles")
        shown = await tiles(browser)
        assert all(t["src"].startswith("blob:") for t in shown)
        assert srv.server.viewer_app.viewers_total == 2, "no MJPEG stream: the grid's WebSocket and the event stream"
        await browser.screenshot("live-six", ready="[...document.querySelectorAll('.tile img')].every(i => i.naturalWidth)")
        clean(browser)


def walker(cam: int, seq: int):
    """A person crossing camera 0's frame for frames 1-15, then nobody."""
    return [("person", 0.9, (20.0 + 8 * seq, 40.0, 70.0 + 8 * seq, 200.0))] if 1 <= seq <= 15 else []


def stored_event(i: int, start: float) -> dict:
    """A finished event for the history (alternating cameras, labels and zones)."""
    event = Event(id=f"{int(start * 1000)}-old{i:03d}", camera=("door", "yard")[i % 2], label=("person", "car")[i % 3 == 0],
                  score=0.8, top_score=0.85 + i / 1000, box=[40.0, 30.0, 200.0, 220.0], start_time=start,
                  end_time=start + 12 + i, end_reason="disappeared", entered_zones=["porch"] if i % 4 == 0 else [],
                  has_snapshot=True, snapshot_box=[40.0, 30.0, 200.0, 220.0], snapshot_score=0.85)
    return event.to_json()


async def test_review_patches_live_and_lightbox_deletes(tmp_path):
    """Review shows a page, then the next; a new event appears at the top without a reload and the
    second page stays; keyboard opens the lightbox, which steps, toggles the box and deletes."""
    server = CamServer(make_config(events={"max_disappeared_s": 0.5}), detector_factory=lambda: ScriptedDetector(walker))
    async with server, AsyncExitStack() as stack:
        base = f"http://127.0.0.1:{server.http_port}"
        store = server.events.store
        now = time.time()
        jpeg = tagged_jpeg(1, 1)
        for i in range(45):  # older than anything the camera makes: two pages of history
            await server.database.run(store.save, stored_event(i, now - 3600 - 60 * i), jpeg, now)
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        stack.push_async_callback(cam.close)
        await cam.send(tagged_jpeg(0, 100))
        browser = await stack.enter_async_context(chromium(f"{base}/#/review"))
        cards = "document.querySelectorAll('.event-card').length"
        await browser.wait(f"{cards} === 30", what="the first page")
        await browser.wait("[...document.querySelectorAll('.event-card img')].slice(0, 10).every(i => i.naturalWidth > 0)")
        assert await browser.layout_shift() < 0.1, "thumbnails load into boxes of their size"
        # scrolling to the end loads the next page (a click on "more" could land on a card of the page
        # the scroll itself loaded, and open it)
        await browser.js("document.querySelector('button.more').scrollIntoView({block: 'end'})")
        await browser.wait(f"{cards} === 45 && document.querySelector('button.more').hidden", what="the second page")
        oldest = stored_event(44, now - 3600 - 60 * 44)["id"]

        for seq in range(1, 16):  # a person walks in: an event starts
            await cam.send(tagged_jpeg(0, seq))
            await asyncio.sleep(0.05)
        first = "document.querySelector('.event-card')"
        await browser.wait(f"{first}.dataset.state === 'active' && {first}.querySelector('img').naturalWidth > 0",
                           what="the new event at the top, with its thumbnail")
        assert await browser.js(cards) == 46
        assert await browser.js(f"!!document.querySelector('.event-card[data-id=\"{oldest}\"]')"), "the second page stayed"
        for seq in range(16, 40):  # and leaves: the event ends
            await cam.send(tagged_jpeg(0, seq))
            await asyncio.sleep(0.05)
        await browser.wait(f"{first}.dataset.state === 'ended'", what="the event to end")
        text = await browser.js(f"{first}.innerText")
        assert "Person" in text and "door" in text and "disappeared" in text
        assert await browser.js(cards) == 46
        await accessible(browser)
        await browser.screenshot("review", ready="[...document.querySelectorAll('.event-card img')].slice(0, 8).every(i => i.naturalWidth > 0)")
        await browser.screenshot("review-dark", dark=True,
                                 ready="[...document.querySelectorAll('.event-card img')].slice(0, 8).every(i => i.naturalWidth > 0)")

        # keyboard: focus the first card, arrow to the second, Enter opens it
        focused = "[...document.querySelectorAll('.card-link')].indexOf(document.activeElement)"
        # focus again on each try: a live update may re-render the card under the focus
        first_index = await browser.wait(f"(({focused} >= 0) || document.querySelector('.card-link').focus(), "
                                         f"{focused} >= 0 && {focused} + 1)", what="a card focused") - 1
        await browser.key("ArrowRight")
        await browser.wait(f"{focused} === {first_index + 1}", what="the next card focused")
        second = await browser.js("document.activeElement.closest('.event-card').dataset.id")
        await browser.key("Enter")
        await browser.wait(f"document.querySelector('dialog.lightbox').open && location.hash === '#/events/{second}'")
        await browser.wait("document.querySelector('.lb-media img').naturalWidth > 0", what="the full snapshot")
        await browser.key("ArrowLeft")
        newest = await browser.js(f"document.querySelectorAll('.event-card')[{first_index}].dataset.id")
        await browser.wait(f"location.hash === '#/events/{newest}'", what="the previous event")
        await browser.key("ArrowRight")
        await browser.wait(f"location.hash === '#/events/{second}'", what="the next event")
        await browser.click("label[for=lb-box]")
        await browser.wait("document.querySelector('.lb-media img').getAttribute('src').includes('bbox=0')")
        await browser.click("label[for=lb-box]")
        await accessible(browser)
        await browser.screenshot("lightbox", ready="document.querySelector('.lb-media img').naturalWidth > 0")

        await browser.click(".lb-side button.danger")  # Delete…: asks first
        await browser.wait("!document.querySelector('.lb-confirm').hidden")
        await browser.screenshot("lightbox-confirm", sizes=((1400, 1000),))
        third = await browser.js(f"document.querySelectorAll('.event-card')[{first_index + 2}].dataset.id")
        await browser.click(".lb-confirm button.danger")
        await browser.wait(f"!document.querySelector('.event-card[data-id=\"{second}\"]') && location.hash === '#/events/{third}'",
                           what="the card to go and the lightbox to show the next event")
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/events/{second}") as resp:
            assert resp.status == 404, "deleted on the server"
        assert await browser.js(cards) == 45
        await browser.key("Escape")
        await browser.wait("!document.querySelector('dialog.lightbox').open && location.hash.startsWith('#/review')")

        # filters: a camera, then a date range where nothing is
        await browser.js("(() => { const s = document.getElementById('f-camera'); s.value = 'yard'; s.dispatchEvent(new Event('change', {bubbles: true})); })()")
        await browser.wait("[...document.querySelectorAll('.event-card .card-camera')].every(c => c.textContent === 'yard')"
                           f" && {cards} === 22", what="only yard's events")
        assert "camera=yard" in await browser.js("location.hash")
        await browser.js("""(() => { const f = document.getElementById('f-from'); f.value = '2099-01-01T00:00';
            f.dispatchEvent(new Event('change', {bubbles: true})); })()""")
        await browser.wait("document.querySelector('.state-empty') && document.querySelector('.state-empty').innerText.includes('Nothing matches these filters')")
        await browser.screenshot("review-no-match", sizes=((390, 844),))
        await browser.click("nav a[data-nav=live]")  # the tile of door shows its latest event
        await browser.wait("document.querySelector('.tile[data-camera=door] .tile-event').textContent.startsWith('Person')")
        clean(browser)


async def test_zone_editor_draws_a_polygon_and_writes_its_toml():
    """Pointer clicks draw a zone on the camera's picture, a drag moves a point, a double-click removes
    one, and the TOML the page shows is a valid config with those points."""
    async with running_server(FakeDetector(), events={"zones": [STEPS]}) as srv, AsyncExitStack() as stack:
        cam = await connect_camera(srv.ws("porch"))
        stack.push_async_callback(cam.close)
        await stack.enter_async_context(feeding(cam, fps=5))
        browser = await stack.enter_async_context(chromium(f"{srv.http}/#/zones/porch"))
        await browser.wait("document.querySelector('.frame-editor img').naturalWidth === 320", what="the camera's picture")
        await browser.wait("document.querySelectorAll('.handle').length === 4", what="the configured zone's points")
        await browser.click(".zones-side button.primary")  # New zone
        box = await browser.js("(() => { const r = document.querySelector('.frame-editor').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
        at = lambda x, y: (box[0] + x * box[2], box[1] + y * box[3])  # noqa: E731 - relative -> viewport
        for x, y in ((0.6, 0.1), (0.9, 0.1), (0.9, 0.4), (0.6, 0.4)):
            await browser.click_at(*at(x, y))
        await browser.wait("document.querySelectorAll('.handle').length === 8")
        await browser.drag(at(0.9, 0.4), at(0.8, 0.45))  # the third point moves
        await browser.click_at(*at(0.6, 0.4), clicks=2)  # the fourth is removed
        await browser.wait("document.querySelectorAll('.handle').length === 7", what="the double-clicked point to go")
        await browser.type("#shape-name", "driveway")
        toml_text = await browser.wait("document.getElementById('zones-toml').value.includes('driveway') && document.getElementById('zones-toml').value")
        await accessible(browser)
        await browser.screenshot("zones", ready="document.querySelector('.frame-editor img').naturalWidth > 0")
        clean(browser)
    config = from_mapping(tomllib.loads(toml_text))  # what the page wrote is a valid config
    zones = {z.name: z for z in config.events.zones}
    assert [list(p) for p in zones["steps"].points] == STEPS["points"]
    points = zones["driveway"].points
    assert len(points) == 3 and zones["driveway"].camera == "porch"
    for got, want in zip(points, ([0.6, 0.1], [0.9, 0.1], [0.8, 0.45])):
        assert abs(got[0] - want[0]) < 0.01 and abs(got[1] - want[1]) < 0.01, (points, "pointer positions")


async def test_login_with_token_then_logout():
    """With http.token the API answers 401 JSON, the page shows a login form; the token logs in (an
    HttpOnly cookie: streams play, a reload stays logged in) and logout shows the form again."""
    token = "viewer-secret-42"
    async with running_server(FakeDetector(), http={"token": token}) as srv, AsyncExitStack() as stack:
        async with aiohttp.ClientSession() as http, http.get(f"{srv.http}/api/cameras") as resp:
            assert resp.status == 401 and (await resp.json())["error"] == "authentication required"
        cam = await connect_camera(srv.ws("porch"))
        stack.push_async_callback(cam.close)
        await stack.enter_async_context(feeding(cam, fps=5))
        browser = await stack.enter_async_context(chromium(f"{srv.http}/"))
        await browser.wait("!!document.getElementById('login-token')", what="the login form")
        assert not await browser.js("document.body.innerText.includes('authentication required')")
        await browser.screenshot("login")
        await browser.type("#login-token", "wrong-token-1")
        await browser.click(".login button[type=submit]")
        await browser.wait("document.querySelector('.login .form-error').textContent.includes('did not work')")
        await browser.type("#login-token", token)
        await browser.key("Enter")
        await browser.wait("document.querySelector('.tile img') && document.querySelector('.tile img').naturalWidth === 320",
                           what="the stream, authorised by the session cookie")
        assert await browser.js("document.cookie") == "", "the session cookie is HttpOnly"
        assert token not in await browser.js("document.querySelector('.tile img').src")
        assert not await browser.js("document.getElementById('logout').hidden")
        await browser.goto(f"{srv.http}/#/system")
        await browser.wait("document.querySelector('.view-system') && document.body.innerText.includes('Logged in with the viewer token')")
        await browser.click("#logout")
        await browser.wait("!!document.getElementById('login-token')", what="the form again")
        await browser.goto(f"{srv.http}/")
        await browser.wait("!!document.getElementById('login-token')", what="no session after logout")
        # the 401s of the failed and logged-out requests are expected; nothing else went wrong
        assert browser.errors == []


async def test_unreachable_banner_within_5_s_and_recovery():
    """Stopping the server shows the unreachable banner within 5 s and greys the figures; a server
    on the same port brings the page back by itself, streams included."""
    config = make_config()
    first = CamServer(config, detector_factory=lambda: FakeDetector())
    await first.start()
    port = first.http_port
    try:
        cam = await connect_camera(f"ws://127.0.0.1:{first.ws_port}/ws/porch")
        async with chromium(f"http://127.0.0.1:{port}/") as browser:
            async with feeding(cam, fps=5):
                await browser.wait("document.querySelector('.tile img') && document.querySelector('.tile img').naturalWidth === 320")
            await first.stop()
            stopped = time.monotonic()
            await browser.wait("!document.getElementById('banner-offline').hidden", timeout=10, what="the banner")
            took = time.monotonic() - stopped
            assert took < 5, f"the banner took {took:.1f} s"
            assert await browser.js("document.body.classList.contains('offline')")
            assert "unreachable" in await browser.js("document.getElementById('banner-offline').innerText")
            await browser.screenshot("offline")
            second = CamServer(make_config(http={"port": port}, storage={"dir": config.storage.dir}),
                               detector_factory=lambda: FakeDetector())
            await second.start()
            try:
                cam2 = await connect_camera(f"ws://127.0.0.1:{second.ws_port}/ws/porch")
                async with feeding(cam2, fps=5):
                    await browser.wait("document.getElementById('banner-offline').hidden && !document.body.classList.contains('offline')",
                                       timeout=10, what="the page to recover")
                    await browser.wait("document.querySelector('.tile .badge').textContent === 'live'", timeout=10)
                    await wait_for(lambda: second.viewer_app.viewers_of("porch") == 1, what="the tile's stream to reopen")
                await cam2.close()
            finally:
                await second.stop()
            assert browser.errors == []
    finally:
        await first.stop()


async def test_system_view_and_random_weights_banner():
    """The System view shows detector, storage, MQTT, webhooks, version and uptime; a .yaml model
    gets a banner naming the file, never its folders."""
    async with running_server(FakeDetector(), detect={"model": "models/private/yolo11n.yaml"}) as srv, \
            chromium(f"{srv.http}/#/system") as browser:
        banner = await browser.wait("!document.getElementById('banner-model').hidden && document.getElementById('banner-model').innerText")
        assert "yolo11n.yaml" in banner and "random weights" in banner and "private" not in banner
        text = await browser.wait("document.querySelector('#storage-meter') && document.querySelector('.view-system').innerText")
        for part in ("Detector", "fake", "Version", "0.1.0", "Up for", "MQTT", "off", "Webhooks", "of 1.0 GB"):
            assert part in text, part
        assert "models/private" not in await browser.js("document.body.innerText")
        await accessible(browser)
        await browser.screenshot("system", ready="!!document.querySelector('#storage-meter')")
        clean(browser)


async def test_camera_view_settings_recordings_motion_clip_and_test_notification_on_a_real_server():
    """With recording, motion, board settings, an admin token and a notification target configured,
    the page shows each from the server's own APIs: the settings panel sends only what changed (after
    asking for the admin token) and the camera receives it; motion and recordings show; an event opens
    on its clip, which plays; the System view offers a test notification."""
    import cv2

    from camserver.sim.scenes import make_scene

    admin = "admin-secret-7"
    frames = [cv2.imencode(".jpg", make_scene(i))[1].tobytes() for i in range(40)]  # the simulator's moving scene
    async with running_server(
        FakeDetector(), events={"labels": ["fake"], "stationary_s": 0.5, "update_interval_s": 1}, motion={"enabled": True},
        record={"mode": "continuous", "segment_s": 2, "pre_capture_s": 1, "post_capture_s": 1},
        http={"admin_token": admin}, notify=[{"urls": ["ntfy://127.0.0.1:9/camserver-test"]}],
        cameras={"ids": ["porch"], "porch": {"settings": {"quality": 12}}},
    ) as srv, AsyncExitStack() as stack:
        cam = await connect_camera(srv.ws("porch"))
        stack.push_async_callback(cam.close)
        received: list[dict] = []

        async def camera() -> None:  # sends the scene at 10 fps and keeps what the server sends it
            async def listen() -> None:
                async for message in cam:
                    if isinstance(message, str):
                        received.append(json.loads(message))
            listener = asyncio.ensure_future(listen())
            try:
                for i in range(10_000):
                    await cam.send(frames[i % len(frames)])
                    await asyncio.sleep(0.1)
            finally:
                listener.cancel()

        sender = asyncio.ensure_future(camera())
        stack.callback(sender.cancel)
        await wait_for(lambda: srv.server.events.events_total >= 1, what="an event (every frame has a 'fake' object)")
        browser = await stack.enter_async_context(chromium(f"{srv.http}/#/camera/porch"))
        await browser.wait("!!document.getElementById('set-quality') && document.getElementById('set-quality').value === '12'",
                           what="the settings panel, with the configured quality")
        await browser.wait("/^Motion: (none|\\d+% of the frame moves)$/.test(document.querySelector('.motion').textContent)",
                           what="the motion line")
        await browser.wait("document.querySelectorAll('.tl-rec').length >= 1 && "
                           "!document.querySelector('[aria-labelledby=rec-title]').hidden && "
                           "document.querySelectorAll('[aria-labelledby=rec-title] li a').length >= 1", what="the recordings")
        assert "Detected" in await browser.js("document.querySelector('.figures').innerText")
        # what neither the server nor the board said shows as not known, not as a value
        assert await browser.js("document.getElementById('set-framesize').value") == ""
        assert await browser.js("document.querySelector('#set-fps + output').value") == "not known"
        await browser.js("(() => { const q = document.getElementById('set-quality'); q.value = '20'; q.dispatchEvent(new Event('input')); })()")
        await browser.click(".settings-form button[type=submit]")
        await browser.wait("!!document.getElementById('secret-input')", what="the admin token prompt (the write was refused)")
        await browser.type("#secret-input", admin)
        await browser.key("Enter")
        await browser.wait("document.querySelector('.settings-form .form-message').textContent.startsWith('Sent')")
        await wait_for(lambda: received, what="the camera to receive the change")
        assert received == [{"type": "control", "quality": 20}], "only what changed is sent"
        await accessible(browser)
        await browser.screenshot("camera-full", ready="!!document.getElementById('set-quality') && "
                                 "document.querySelectorAll('.tl-rec').length >= 1")

        await browser.wait("!!document.querySelector('.mini-events a')", what="the camera's events")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as http:
            async with asyncio.timeout(20):  # the open event's clip holds finished segments: seconds of video
                while True:
                    async with http.get(f"{srv.http}/api/cameras/porch/recordings") as resp:
                        rows = (await resp.json())["recordings"]
                    if sum(not r["in_progress"] for r in rows) >= 2:
                        break
                    await asyncio.sleep(0.2)
        event_id = await browser.js("document.querySelector('.mini-events a').getAttribute('href').split('/').pop()")
        await browser.click(".mini-events a")
        await browser.wait(f"location.hash === '#/events/{event_id}' && document.querySelector('dialog.lightbox').open")
        await browser.wait("!document.querySelector('.lb-tabs').hidden", what="the clip tab (the event has a clip)")
        # an event with a clip opens on it, its snapshot as the poster; the clip plays
        await browser.wait("document.querySelector('.lb-media video').getAttribute('src').endsWith('/clip.mp4')",
                           what="the clip player")
        assert await browser.js("!document.querySelector('.lb-media video').hidden && "
                                "document.querySelector('.lb-media video').getAttribute('poster').includes('/snapshot.jpg')")
        assert "its clip" in await browser.js("document.getElementById('lb-confirm-text').textContent")
        await browser.wait("document.querySelector('.lb-media video').readyState >= 1 && "
                           "document.querySelector('.lb-media video').duration > 1", what="the clip's metadata")
        await browser.js("document.querySelector('.lb-media video').muted = true")
        await browser.js("document.querySelector('.lb-media video').play()")
        await browser.wait("document.querySelector('.lb-media video').currentTime > 0.3", what="the clip to play")
        await browser.js("document.querySelector('.lb-media video').pause()")
        # the live feed's updates of the event (a heartbeat every second here) keep the clip on screen
        updates = await browser.js("performance.now()")
        await browser.wait(f"performance.now() > {updates} + 2500", what="two heartbeats")
        assert await browser.js("document.querySelector('.lb-media video').getAttribute('src') || ''"), "the clip stays"
        await browser.screenshot("lightbox-clip", ready="document.querySelector('.lb-media video').readyState >= 2")
        await browser.click(".lb-tabs button:nth-child(1)")
        await browser.wait("document.querySelector('.lb-media video').hidden && !document.querySelector('.lb-media img').hidden")
        await browser.key("Escape")  # back where the event was opened from
        await browser.wait("!document.querySelector('dialog.lightbox') && location.hash === '#/camera/porch'")
        await browser.goto(f"{srv.http}/#/system")
        await browser.wait("[...document.querySelectorAll('.view-system button')].some(b => b.textContent.includes('test notification'))",
                           what="the test notification button")
        await browser.screenshot("system-full", ready="!!document.querySelector('#storage-meter')")
        assert browser.errors == []
