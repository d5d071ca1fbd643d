"""The live grid's WebSocket (/api/grid.ws) and the overview MJPEG (/api/overview.mjpg) through a
real server and the real aiohttp client: only subscribed cameras' frames come, a slow reader skips
frames instead of buffering them, tokens are checked, bad messages closed; the overview is composed
only while watched."""

from __future__ import annotations

import asyncio
import socket
import time
from contextlib import AsyncExitStack, suppress

import aiohttp
import pytest
from conftest import (
    FakeDetector,
    connect_camera,
    decode,
    feeding,
    make_jpeg,
    mjpeg,
    running_server,
    wait_for,
)

from camserver.web.grid import CLOSE_BAD_MESSAGE, compose_overview, parse_subscription

TOKEN = "grid-viewer-token"


def split(message: bytes) -> tuple[str, bytes]:
    """A grid message's camera id and JPEG."""
    n = message[0]
    return message[1 : 1 + n].decode(), message[1 + n :]


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> tuple[str, bytes]:
    """The next frame message."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.BINARY, msg
    return split(msg.data)


async def test_frames_of_the_subscribed_cameras_only(http):
    """Three cameras send; a connection subscribed to two gets live JPEGs of those two only, and a new
    subscription switches what comes; the viewers are counted per camera while subscribed."""
    async with running_server(FakeDetector()) as srv, AsyncExitStack() as stack:
        for name in ("door", "yard", "shed"):
            cam = await connect_camera(srv.ws(name))
            stack.push_async_callback(cam.close)
            await stack.enter_async_context(feeding(cam, fps=15))
        # each camera's first frame processed: before it, the grid sends the camera's 640x480 placeholder
        await wait_for(lambda: len(list(srv.server.hub)) == 3 and all(c.frames_processed > 0 for c in srv.server.hub),
                       what="three cameras, each with a frame")
        async with http.ws_connect(f"{srv.http}/api/grid.ws") as ws:
            await ws.send_json({"cameras": ["door", "yard"]})
            seen: dict[str, int] = {}
            for _ in range(30):
                cid, jpeg = await receive(ws)
                assert decode(jpeg).shape == (240, 320, 3)
                seen[cid] = seen.get(cid, 0) + 1
            assert set(seen) == {"door", "yard"} and min(seen.values()) >= 5, seen
            viewer = srv.server.viewer_app
            assert viewer.viewers_of("door") == viewer.viewers_of("yard") == 1 and viewer.viewers_of("shed") == 0
            assert viewer.watched("door"), "the grid shows boxes: the annotated channel"
            await ws.send_json({"cameras": ["shed"]})
            # what was in flight may still come; then only shed
            deadline = time.monotonic() + 10
            while (await receive(ws))[0] != "shed":
                assert time.monotonic() < deadline
            for _ in range(10):
                assert (await receive(ws))[0] == "shed"
            assert viewer.viewers_of("door") == 0 and viewer.viewers_of("shed") == 1
        await wait_for(lambda: srv.server.viewer_app.viewers_of("shed") == 0 and srv.server.viewer_app.viewers_total == 0,
                       what="the counts to go with the connection")


async def test_no_compression_even_when_the_browser_offers_it(srv, http):
    """Browsers offer permessage-deflate; JPEGs do not deflate, so the server declines it (CPU for nothing)."""
    async with http.ws_connect(f"{srv.http}/api/grid.ws", compress=15) as ws:
        assert "Sec-WebSocket-Extensions" not in ws._response.headers
        assert ws.compress == 0


async def test_fps_cap_is_kept():
    """With {"fps": 4} a 20 fps camera arrives at about 4 frames a second."""
    async with running_server(FakeDetector()) as srv, aiohttp.ClientSession() as http, AsyncExitStack() as stack:
        cam = await connect_camera(srv.ws("door"))
        stack.push_async_callback(cam.close)
        await stack.enter_async_context(feeding(cam, fps=20))
        async with http.ws_connect(f"{srv.http}/api/grid.ws") as ws:
            await ws.send_json({"cameras": ["door"], "fps": 4})
            await receive(ws)
            start, n = time.monotonic(), 0
            while time.monotonic() - start < 3:
                await receive(ws)
                n += 1
            assert 8 <= n <= 14, f"{n} frames in 3 s with a cap of 4 fps"


def small_receive_buffer(addr_info) -> socket.socket:
    """A client socket that holds little unread data, so that a reader that stops is felt at once."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=kind, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    return sock


async def test_slow_reader_skips_frames_and_the_server_holds_little():
    """A viewer that stops reading for 3 s gets no backlog: the server replaces the unsent frame in the
    camera's slot (counted as skipped), its write buffer stays under one frame plus the transport's limit,
    and once it reads again fresh frames come at once."""
    connector = aiohttp.TCPConnector(socket_factory=small_receive_buffer)
    async with running_server(FakeDetector(), http={"viewer_write_timeout_s": 30}) as srv, \
            aiohttp.ClientSession(connector=connector) as http, AsyncExitStack() as stack:
        cam = await connect_camera(srv.ws("door"))
        stack.push_async_callback(cam.close)
        feed = await stack.enter_async_context(feeding(cam, fps=20, width=640, height=480, noise=True))
        async with http.ws_connect(f"{srv.http}/api/grid.ws") as ws:
            await ws.send_json({"cameras": ["door"]})
            await receive(ws)
            conn = next(iter(srv.server.viewer_app.grid.connections))
            ws._response.connection.transport.pause_reading()  # the viewer stops reading
            before_sent, before_feed = conn.sent, feed.sent
            server_buffered = 0
            for _ in range(30):
                await asyncio.sleep(0.1)
                transport = conn.ws._req.transport
                server_buffered = max(server_buffered, transport.get_write_buffer_size() if transport else 0)
            produced, went_out = feed.sent - before_feed, conn.sent - before_sent
            frame_bytes = len(make_jpeg(1, 640, 480, noise=True))
            assert produced >= 30, produced
            assert went_out <= produced // 3, f"{went_out} of {produced} frames sent to a viewer that reads nothing"
            assert conn.skipped >= produced // 2, (conn.skipped, produced)
            assert server_buffered <= frame_bytes + 64 * 1024, server_buffered
            assert len(conn.slots) <= 1, "one waiting frame per camera at most"
            ws._response.connection.transport.resume_reading()
            start = time.monotonic()
            for _ in range(10):
                await receive(ws)
            assert time.monotonic() - start < 5, "frames flow again once the viewer reads"


async def test_a_viewer_that_stops_reading_is_dropped_after_the_write_timeout():
    """http.viewer_write_timeout_s after a stalled write the connection is aborted and its places freed."""
    connector = aiohttp.TCPConnector(socket_factory=small_receive_buffer)
    async with running_server(FakeDetector(), http={"viewer_write_timeout_s": 1.0}) as srv, \
            aiohttp.ClientSession(connector=connector) as http, AsyncExitStack() as stack:
        cam = await connect_camera(srv.ws("door"))
        stack.push_async_callback(cam.close)
        await stack.enter_async_context(feeding(cam, fps=20, width=640, height=480, noise=True))
        async with http.ws_connect(f"{srv.http}/api/grid.ws") as ws:
            await ws.send_json({"cameras": ["door"]})
            await receive(ws)
            ws._response.connection.transport.pause_reading()
            viewer = srv.server.viewer_app
            await wait_for(lambda: not viewer.grid.connections and viewer.viewers_total == 0, timeout=15,
                           what="the stalled viewer to be dropped")
            assert viewer.viewers_of("door") == 0


async def test_shutdown_is_quick_with_a_stalled_grid_viewer():
    """A grid viewer that stopped reading does not hold the server's shutdown (its close is cut short)."""
    connector = aiohttp.TCPConnector(socket_factory=small_receive_buffer)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with running_server(FakeDetector(), http={"viewer_write_timeout_s": 60}) as srv:
            cam = await connect_camera(srv.ws("door"))
            async with feeding(cam, fps=20, width=640, height=480, noise=True):
                ws = await http.ws_connect(f"{srv.http}/api/grid.ws")
                await ws.send_json({"cameras": ["door"]})
                await receive(ws)
                ws._response.connection.transport.pause_reading()
                conn = next(iter(srv.server.viewer_app.grid.connections))
                await wait_for(lambda: conn.skipped > 5, what="the viewer's writes to stall")
            started = time.monotonic()  # the server stops, with the viewer still stalled
        elapsed = time.monotonic() - started
        await cam.close()
        ws._response.connection.transport.resume_reading()  # for the client's own close: the server is gone
        with suppress(TimeoutError):
            async with asyncio.timeout(2):
                await ws.close()
        assert elapsed < 5, f"the shutdown waited {elapsed:.1f} s on the stalled viewer"


async def test_tokens_refuse_a_connection_without_credentials():
    """With http.token set, the grid and the overview answer 401 without it and work with it."""
    async with running_server(FakeDetector(), http={"token": TOKEN}) as srv, aiohttp.ClientSession() as http, \
            AsyncExitStack() as stack:
        cam = await connect_camera(srv.ws("door"))
        stack.push_async_callback(cam.close)
        await stack.enter_async_context(feeding(cam, fps=10))
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{srv.http}/api/grid.ws")
        assert refused.value.status == 401
        async with http.get(f"{srv.http}/api/overview.mjpg") as resp:
            assert resp.status == 401
        async with http.ws_connect(f"{srv.http}/api/grid.ws?token={TOKEN}") as ws:
            await ws.send_json({"cameras": ["door"]})
            assert (await receive(ws))[0] == "door"


@pytest.mark.parametrize("message", ["not json", '{"cameras": "door"}', '{"cameras": [], "fps": -1}', "[1]",
                                     '{"cameras": [' + ",".join(['"x"'] * 65) + "]}"])
async def test_a_bad_subscription_closes_with_1003(srv, http, message):
    """A message that is not a subscription closes the connection with 1003; the server goes on."""
    async with http.ws_connect(f"{srv.http}/api/grid.ws") as ws:
        await ws.send_str(message)
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == CLOSE_BAD_MESSAGE
    assert srv.server.viewer_app.grid.refused_messages == 1
    async with http.get(f"{srv.http}/healthz") as resp:
        assert resp.status in (200, 503)


def test_parse_subscription_and_compose():
    """A subscription's ids are deduplicated; the overview of 5 cameras is 3 columns by 2 rows, offline cells too."""
    assert parse_subscription('{"cameras": ["a", "b", "a"], "fps": 5}') == (["a", "b"], 5.0)
    with pytest.raises(ValueError):
        parse_subscription('{"fps": true}')
    img = decode(compose_overview([("a", make_jpeg(1, 640, 480))] * 4 + [("b", None)]))
    assert img.shape == (480, 960, 3)


async def test_overview_is_composed_only_while_watched(http):
    """No viewer, no composition; a viewer gets MJPEG parts of every camera at most 2 a second; after
    it leaves the compositions stop."""
    async with running_server(FakeDetector()) as srv, AsyncExitStack() as stack:
        for name in ("door", "yard", "shed"):
            cam = await connect_camera(srv.ws(name))
            stack.push_async_callback(cam.close)
            await stack.enter_async_context(feeding(cam, fps=10, width=640, height=480))
        await wait_for(lambda: len(list(srv.server.hub)) == 3, what="three cameras")
        await asyncio.sleep(1.0)  # cameras send for a while: nobody watches the overview
        overview = srv.server.viewer_app.grid.overview
        assert overview.compositions == 0
        async with mjpeg(http, f"{srv.http}/api/overview.mjpg") as reader:
            start = time.monotonic()
            for _ in range(5):
                part = await reader.next()
                assert decode(part.jpeg).shape == (480, 640, 3)  # 2x2 cells of 320x240
            elapsed = time.monotonic() - start
            assert overview.compositions <= 2 * elapsed + 2, (overview.compositions, elapsed)
        await wait_for(lambda: srv.server.viewer_app.viewers_total == 0, what="the overview viewer to leave")
        done = overview.compositions
        await asyncio.sleep(1.5)
        assert overview.compositions == done, "nothing is composed once nobody watches"
