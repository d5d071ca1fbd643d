"""Request bodies on the viewer port: a flood of bodies that never come leaves room for everyone else and
is closed within the body deadline; JSON caps hold for what is read; deep JSON is a 400; bytes=-0 is 416."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from camserver.web.bodies import unsatisfiable_ranges
from camserver.web.recordings import RecordingsApi
from bodyless import HEAD as LOGIN_HEAD
from camserver.web.viewer import json_errors
from conftest import FakeDetector, running_server, wait_for
from recordkit import recording
from test_board import make_image
from test_record_web import event_clip

TOKEN = "viewer-secret-42"
BODY_TIMEOUT_S = 3.0


async def probe(http: aiohttp.ClientSession, base: str, server: Any, image: str) -> dict[str, float]:
    """Seconds each of the page, /healthz, a stream's first picture, a protected GET and an OTA download took."""
    took: dict[str, float] = {}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=10)

    async def timed(name: str, url: str, headers: dict[str, str] | None = None, stream: bool = False) -> None:
        started = time.monotonic()
        async with http.get(url, headers=headers, timeout=timeout) as resp:
            assert resp.status == 200, (name, resp.status)
            if stream:
                data = b""
                while b"\xff\xd9" not in data:  # the end of the first JPEG part
                    data += await resp.content.readany()
            else:
                await resp.read()
        took[name] = time.monotonic() - started

    info = next(i for i in await server.board.images() if i.name == image)
    link = server.board.links.create("cam", info.name, info.md5, info.size)
    await asyncio.gather(
        timed("page", f"{base}/"), timed("healthz", f"{base}/healthz"),
        timed("stream", f"{base}/stream.mjpg?token={TOKEN}", stream=True),
        timed("api", f"{base}/api/cameras", auth), timed("ota", f"{base}/ota/{link.token}"))
    return took


@pytest.mark.parametrize("sources", [["127.0.0.2"], [f"127.0.0.{n}" for n in range(3, 8)]], ids=["1-address", "5-addresses"])
async def test_bodies_that_never_come_leave_room_and_are_closed_within_the_deadline(http, sources):
    """515 connections sending a login's headers with Content-Length: 4000 and no body, reopened as soon as
    they are closed, from one address or five (another process, tests/bodyless.py): the page, /healthz, a
    stream, a protected GET and an OTA download from 127.0.0.1 all answer within 2 s throughout, and
    each such connection is closed within the body deadline."""
    async with running_server(FakeDetector(), http={"token": TOKEN, "body_timeout_s": BODY_TIMEOUT_S,
                                                   "request_timeout_s": 60}) as srv:
        server = srv.server
        await server.board.upload("cam-2.0.0.bin", make_image())
        flood_s = 2.5 * BODY_TIMEOUT_S
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).with_name("bodyless.py")), str(server.http_port), str(flood_s), "515",
            *sources, stdout=asyncio.subprocess.PIPE)
        worst: dict[str, float] = {}
        rounds = 0
        try:
            assert json.loads(await asyncio.wait_for(proc.stdout.readline(), 30)) == {"started": True}
            await wait_for(lambda: server.http_limit.unproven >= 250, what="the flood to hold its share of connections")
            deadline = time.monotonic() + flood_s - 1.0
            while time.monotonic() < deadline:
                for name, took in (await probe(http, srv.http, server, "cam-2.0.0.bin")).items():
                    worst[name] = max(worst.get(name, 0.0), took)
                rounds += 1
                await asyncio.sleep(0.2)
            result = json.loads(await asyncio.wait_for(proc.stdout.readline(), flood_s + BODY_TIMEOUT_S + 60))
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        async with http.get(f"{srv.http}/healthz") as resp:
            health = await resp.json()
    print(f"{len(sources)} source(s): {rounds} rounds, worst answers " + ", ".join(f"{k} {v:.2f} s" for k, v in worst.items())
          + f"; {result['connections']} flood connections, longest held {result['longest_s']:.2f} s; "
          f"{health['http_body_timeouts']} timed out,"
          f" {health['http_connections_evicted']} evicted")
    assert rounds >= 5 and max(worst.values()) < 2.0, worst
    assert result["connections"] >= 515 and result["longest_s"] <= BODY_TIMEOUT_S + 1.5, result
    assert health["http_body_timeouts"] + health["http_connections_evicted"] >= 515, health


async def test_a_body_that_stops_coming_gets_408_and_the_connection_closes(http):
    """A login whose declared body never comes: 408 JSON at the body deadline, and the connection closed."""
    async with running_server(FakeDetector(), http={"token": TOKEN, "body_timeout_s": 2}) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.http_port)
        started = time.monotonic()
        writer.write(LOGIN_HEAD + b'{"token": ')
        answer = await asyncio.wait_for(reader.read(), 20)
        took = time.monotonic() - started
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408") and b'"request timeout"' in answer, answer
        assert 1.5 <= took <= 4.0, took
        async with http.get(f"{srv.http}/healthz") as resp:
            assert (await resp.json())["http_body_timeouts"] == 1


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("method,path", [("POST", "/api/login"), ("POST", "/api/cameras/cam/control"),
                                         ("POST", "/api/cameras/cam/firmware")])
async def test_json_nested_too_deep_is_a_400_not_a_500(http, caplog, method, path):
    """JSON nested 2,000 deep (within the 4 KB cap) on the login, control and firmware update routes:
    400 JSON, no error logged."""
    async with running_server(FakeDetector(), http={"token": TOKEN}, cameras={"ids": ["cam"]}) as srv:
        async with http.request(method, f"{srv.http}{path}", data=nested(2000),
                                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}) as resp:
            assert resp.status == 400, (resp.status, await resp.text())
            assert (await resp.json())["error"] == "invalid JSON"
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]


async def test_json_caps_limit_what_is_read_not_what_is_declared(http):
    """A chunked body (no Content-Length) of 64 KB, over the login's 4 KB and the test notification's 1 KB
    caps and under aiohttp's 1 MB, gets 413 on both (it was read whole and checked); one within the
    cap is read as usual."""
    notify = [{"urls": ["json://127.0.0.1:9/"]}]  # never reached: the body is refused first
    async with running_server(FakeDetector(), http={"token": TOKEN}, notify=notify) as srv:
        async def chunks(count: int, size: int):
            yield b'{"token": "'
            for _ in range(count):
                yield b"x" * size
            yield b'"}'

        async with http.post(f"{srv.http}/api/login", data=chunks(16, 4096),
                             headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 413, resp.status
        async with http.post(f"{srv.http}/api/notify/test", data=chunks(16, 4096),
                             headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 413, resp.status
        async with http.post(f"{srv.http}/api/login", data=chunks(1, 100),
                             headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 401, "a small chunked body is read"


async def test_range_bytes_minus_zero_is_416(tmp_path):
    """An event clip asked for with Range: bytes=-0 answers 416 with Content-Range bytes */size (RFC 9110),
    through the viewer app's middlewares; other ranges still get 206."""
    async with recording(tmp_path, mode="events") as rig:
        await event_clip(rig)
        size = (await rig.recorder.clip_file("ev1")).path.stat().st_size
        app = web.Application(middlewares=[json_errors, unsatisfiable_ranges])
        rec = rig.recorder
        RecordingsApi(rec.clip_file, rec.list_recordings, rec.export, lambda c: c == "door", clock=rig.clock).add_routes(app)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        try:
            async with aiohttp.ClientSession() as http:
                for value in ("bytes=-0", "bytes=-000"):
                    async with http.get(f"{base}/api/events/ev1/clip.mp4", headers={"Range": value}) as resp:
                        assert resp.status == 416, value
                        assert resp.headers["Content-Range"] == f"bytes */{size}"
                async with http.get(f"{base}/api/events/ev1/clip.mp4", headers={"Range": "bytes=-10"}) as resp:
                    assert resp.status == 206 and len(await resp.read()) == 10
        finally:
            await runner.cleanup()
