"""Headless Chromium opens the page and shows the live MJPEG stream (driven over the DevTools protocol)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
from pathlib import Path

import aiohttp
import pytest
import websockets

from conftest import FakeDetector, connect_camera, feeding, running_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")

CARD_STATE = """JSON.stringify([...document.querySelectorAll('.cam')].map(c => ({
  id: c.dataset.camera, state: c.querySelector('.state').textContent,
  w: c.querySelector('img').naturalWidth, h: c.querySelector('img').naturalHeight,
  figs: c.querySelector('.figs').textContent})))"""


class DevTools:
    """A minimal Chrome DevTools Protocol client over the websockets library."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params) -> dict:
        msg_id = next(self.ids)
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == msg_id:
                assert "error" not in reply, reply
                return reply["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


async def open_chromium(url: str, profile: Path) -> tuple[asyncio.subprocess.Process, DevTools]:
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
        f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1000,700", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    async with asyncio.timeout(30):
        while not (port_file.exists() and port_file.read_text().strip()):
            await asyncio.sleep(0.1)  # chromium writes the file when its DevTools server listens
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    pages = [t for t in await resp.json() if t["type"] == "page"]
                if pages:
                    break
                await asyncio.sleep(0.1)
    ws = await websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
    return proc, DevTools(ws)


async def test_page_shows_live_stream_and_figures(tmp_path):
    """The page lists the camera, marks it online, and its <img> shows live frames (camera size, not placeholder)."""
    async with running_server(FakeDetector()) as srv:
        cam = await connect_camera(srv.ws("porch"))
        async with feeding(cam, fps=10):
            proc, devtools = await open_chromium(f"{srv.http}/", tmp_path / "profile")
            try:
                cards = []
                async with asyncio.timeout(30):
                    # the figures refresh every 2 s: wait until they count this page's own viewer
                    while not (cards and cards[0]["w"] == 320 and "viewers 1" in cards[0]["figs"]):
                        cards = json.loads(await devtools.evaluate(CARD_STATE) or "[]")
                        await asyncio.sleep(0.2)
                assert [c["id"] for c in cards] == ["porch"]
                assert (cards[0]["w"], cards[0]["h"]) == (320, 240)
                assert cards[0]["state"] == "online"
                shot = await devtools.call("Page.captureScreenshot", format="png")
                (tmp_path / "page.png").write_bytes(base64.b64decode(shot["data"]))
                assert srv.server.viewer_app.viewers_of("porch") == 1
            finally:
                await devtools.ws.close()
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 10)
        await cam.close()


EVENT_STATE = """JSON.stringify([...document.querySelectorAll('.events li')].map(li => ({
  text: li.querySelector('.what').textContent, cls: li.querySelector('.what').className,
  thumb: li.querySelector('img').naturalWidth})))"""


async def test_page_shows_an_event_live_without_reload(tmp_path):
    """An event created while the page is open appears in its camera's list, with a thumbnail, then as ended."""
    from conftest import ScriptedDetector, make_config, tagged_jpeg

    def walker(cam, seq):
        return [("person", 0.9, (20.0 + 8 * seq, 40.0, 70.0 + 8 * seq, 200.0))] if seq <= 15 else []

    from camserver.app import CamServer

    server = CamServer(make_config(events={"max_disappeared_s": 0.5}), detector_factory=lambda: ScriptedDetector(walker))
    async with server:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await cam.send(tagged_jpeg(0, 100))  # the camera appears on the page before anything happens
        proc, devtools = await open_chromium(f"http://127.0.0.1:{server.http_port}/", tmp_path / "profile")
        try:
            async with asyncio.timeout(30):
                while not await devtools.evaluate("document.querySelectorAll('.cam').length"):
                    await asyncio.sleep(0.1)
                for seq in range(1, 16):
                    await cam.send(tagged_jpeg(0, seq))
                    await asyncio.sleep(0.05)
                events = []
                while not (events and events[0]["thumb"] > 0):
                    events = json.loads(await devtools.evaluate(EVENT_STATE) or "[]")
                    await asyncio.sleep(0.1)
                assert len(events) == 1 and events[0]["text"].startswith("person") and "live" in events[0]["cls"]
                for seq in range(16, 40):  # the person has gone: the event ends
                    await cam.send(tagged_jpeg(0, seq))
                    await asyncio.sleep(0.05)
                while "ended" not in events[0]["cls"]:
                    events = json.loads(await devtools.evaluate(EVENT_STATE) or "[]")
                    await asyncio.sleep(0.1)
            assert "disappeared" in events[0]["text"]
            shot = await devtools.call("Page.captureScreenshot", format="png")
            (tmp_path / "events.png").write_bytes(base64.b64decode(shot["data"]))
            await devtools.evaluate("location.hash = '#history'")
            async with asyncio.timeout(10):
                while not await devtools.evaluate("document.querySelectorAll('#rows tr').length"):
                    await asyncio.sleep(0.1)
            rows = await devtools.evaluate("[...document.querySelectorAll('#rows tr')].map(r => r.textContent).join('|')")
            assert "door" in rows and "person" in rows and "disappeared" in rows
            shot = await devtools.call("Page.captureScreenshot", format="png")
            (tmp_path / "history.png").write_bytes(base64.b64decode(shot["data"]))
        finally:
            await devtools.ws.close()
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
        await cam.close()
