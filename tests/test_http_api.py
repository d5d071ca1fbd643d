"""The viewer HTTP API: camera list, detections, health, errors, the page."""

from __future__ import annotations

from conftest import connect_camera, make_jpeg, wait_for

FIELDS = {
    "id", "connected", "frames_received", "frames_processed", "frames_dropped", "frames_rejected",
    "viewers", "fps_in", "fps_out", "inference_ms", "last_frame_age_s",
}


async def test_api_cameras_lists_counters_and_figures(srv, http):
    """/api/cameras has one object per camera with the documented fields and live values."""
    cam = await connect_camera(srv.ws("yard"))
    await cam.send('{"type": "status", "rssi": -60}')
    for seq in range(1, 4):
        await cam.send(make_jpeg(seq))
    camera = srv.server.hub.get("yard")
    await wait_for(lambda: camera.frames_processed + camera.frames_dropped == 3)
    async with http.get(f"{srv.http}/api/cameras") as resp:
        assert resp.status == 200
        cams = await resp.json()
    assert [c["id"] for c in cams] == ["yard"]
    yard = cams[0]
    assert FIELDS <= yard.keys()
    assert yard["connected"] is True
    assert yard["frames_received"] == 3
    assert yard["frames_processed"] + yard["frames_dropped"] == 3
    assert yard["inference_ms"] is not None and yard["inference_ms"] >= 0
    assert yard["last_frame_age_s"] < 5
    assert yard["fps_in"] > 0
    assert yard["status"] == {"type": "status", "rssi": -60}
    await cam.close()


async def test_healthz_ok_once_started(srv, http):
    """/healthz answers 200 JSON while the server runs."""
    async with http.get(f"{srv.http}/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"


async def test_unknown_camera_is_404_json(srv, http):
    """Every per-camera URL answers 404 with JSON for an unknown camera."""
    for path in ("stream.mjpg", "snapshot.jpg"):
        async with http.get(f"{srv.http}/cameras/nope/{path}") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"] == "unknown camera"
    async with http.get(f"{srv.http}/api/cameras/nope/detections") as resp:
        assert resp.status == 404
        assert "nope" in (await resp.json())["detail"]


async def test_wrong_method_is_405(srv, http):
    """POST to a GET route is 405 with an Allow header."""
    async with http.post(f"{srv.http}/api/cameras") as resp:
        assert resp.status == 405
        assert "GET" in resp.headers["Allow"]
        assert (await resp.json())["error"] == "Method Not Allowed"


async def test_index_page_loads_the_app(srv, http):
    """/ is the app's HTML page, which loads its ES modules (the app itself: test_browser.py)."""
    async with http.get(f"{srv.http}/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        html = await resp.text()
    assert '<script type="module" src="/static/app.js">' in html


async def test_mjpeg_headers(srv, http):
    """The stream has the multipart content type with a boundary and no-cache."""
    async with http.get(f"{srv.http}/stream.mjpg") as resp:
        assert resp.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=camserverframe"
        assert "no-cache" in resp.headers["Cache-Control"]


async def test_every_route_is_registered_once_and_control_is_the_boards(srv):
    """The running app has one route per method and path (aiohttp answers with the first, so a second one is dead
    code); POST /api/cameras/{id}/control is the board's, which keeps the settings and paces them."""
    seen: dict[tuple[str, str], list[str]] = {}
    for route in srv.server.runner.app.router.routes():
        if route.resource is not None:
            seen.setdefault((route.method, route.resource.canonical), []).append(route.handler.__qualname__)
    assert {key: names for key, names in seen.items() if len(names) > 1} == {}
    assert seen[("POST", "/api/cameras/{camera_id}/control")] == ["BoardApi.control"]
