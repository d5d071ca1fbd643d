"""The Settings view's Cameras section in headless Chromium through a real server started from the shipped
config.toml: a camera's name and another camera's own recording mode saved from the page are applied at once
(read back from the API, no restart offered), the live grid and the camera view show the name; a bad name shows
the config's own line next to its field and writes nothing; screenshots at desktop and phone width."""

from __future__ import annotations

import shutil
import tomllib
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from browser import CHROMIUM, chromium
from camserver.app import CamServer
from camserver.config.writeback import ConfigFile
from conftest import FakeDetector, connect_camera, feeding
from test_browser_settings import shots

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")

SHIPPED = Path(__file__).resolve().parent.parent / "config.toml"
MSG = "document.querySelector('#settings-cameras .form-message').textContent"


async def cameras(base: str) -> dict[str, dict]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/api/cameras") as resp:
        return {c["id"]: c for c in await resp.json()}


async def test_a_name_and_a_cameras_recording_mode_saved_from_the_page_apply_at_once(tmp_path):
    path = tmp_path / "config.toml"
    shutil.copyfile(SHIPPED, path)
    file = ConfigFile(path, {"ingest": {"host": "127.0.0.1", "port": 0}, "storage": {"dir": str(tmp_path / "data")},
                             "http": {"host": "127.0.0.1", "port": 0, "mdns": False}, "motion": {"enabled": False}})
    file.apply({"record": {"mode": "continuous"}}, file.read()[1])
    config = file.effective(tomllib.loads(path.read_text()))
    async with CamServer(config, detector_factory=FakeDetector, config_file=file) as server, AsyncExitStack() as stack:
        base = f"http://127.0.0.1:{server.http_port}"
        for camera in ("porch", "yard"):
            cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/{camera}")
            stack.push_async_callback(cam.close)
            await stack.enter_async_context(feeding(cam, fps=5))
        browser = await stack.enter_async_context(chromium(f"{base}/#/settings"))
        await browser.wait("document.querySelector('#set-cameras-yard-record') !== null", what="both cameras' fields")
        assert await browser.js("document.querySelector('label[for=set-cameras-porch-name]').textContent") == "Name"
        await shots(browser, "settings-cameras-before", "settings-cameras")

        await browser.type("#set-cameras-porch-name", "Porch light")
        await browser.js("document.getElementById('set-cameras-yard-record').value = 'off'")
        await browser.click("#settings-cameras button[type=submit]")
        await browser.wait(f"{MSG}.startsWith('Saved.')", what="saved")
        message = await browser.js(MSG)
        assert "Applied now: cameras.porch.name, cameras.yard.record." in message, message
        assert await browser.js("document.getElementById('settings-restart').hidden"), "nothing waits for a restart"
        cams = await cameras(base)
        assert cams["porch"]["name"] == "Porch light" and cams["yard"]["name"] == "yard"
        assert cams["yard"]["recording"]["mode"] == "off" and cams["porch"]["recording"]["mode"] == "continuous"
        saved = tomllib.loads(path.read_text())["cameras"]
        assert saved["porch"] == {"name": "Porch light"} and saved["yard"] == {"record": "off"}, saved
        await shots(browser, "settings-cameras-saved", "settings-cameras")

        # a pasted name with a control character: the config's line under the field, nothing written
        before = path.read_bytes()
        await browser.js("document.getElementById('set-cameras-porch-name').value = 'Porch\\u0007light'")
        await browser.click("#settings-cameras button[type=submit]")
        error = "document.getElementById('set-cameras-porch-name-error').textContent"
        await browser.wait(f"{error}.length > 0", what="the name's error")
        assert "cameras.porch.name" in await browser.js(error) and "1 to 40 printable" in await browser.js(error)
        assert await browser.js(MSG) == "Not saved."
        assert path.read_bytes() == before
        await shots(browser, "settings-cameras-invalid", "settings-cameras")

        # after a save the form compares with what it saved: clearing the name now removes it from the file
        await browser.type("#set-cameras-porch-name", "Porch light")
        await browser.click("#settings-cameras button[type=submit]")
        await browser.wait(f"{MSG}.startsWith('Saved')", what="saved again")
        await browser.js("document.getElementById('set-cameras-porch-name').value = ''")
        await browser.click("#settings-cameras button[type=submit]")
        await browser.wait(f"{MSG}.includes('Applied now: cameras.porch.name')", what="the name removed")
        assert "name" not in tomllib.loads(path.read_text())["cameras"].get("porch", {})  # an empty table may stay (RFC 7396)
        assert (await cameras(base))["porch"]["name"] == "porch"
        await browser.type("#set-cameras-porch-name", "Porch light")
        await browser.click("#settings-cameras button[type=submit]")
        await browser.wait(f"{MSG}.includes('Applied now: cameras.porch.name')", what="named again")

        await browser.goto(f"{base}/#/live")
        await browser.wait("document.querySelector('.tile[data-camera=porch] .tile-name')?.textContent === 'Porch light'",
                           what="the tile's name")
        assert await browser.js("document.querySelector('.tile[data-camera=yard] .tile-name').textContent") == "yard"
        await browser.screenshot("live-named")
        await browser.goto(f"{base}/#/camera/porch")
        await browser.wait("document.getElementById('cam-title')?.textContent === 'Porch light'", what="the view's title")
        assert browser.errors == [], browser.errors
