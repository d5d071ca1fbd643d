"""The Settings view in headless Chromium through a real server started from the shipped config.toml: the
recording mode changed from the page is saved (read back from the API) and in effect at once; a bad value shows
the config's own line next to its field; a key that needs a restart offers "Restart now"; screenshots of each
section and state at desktop and phone width."""

from __future__ import annotations

import shutil
import tomllib
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from browser import CHROMIUM, DESKTOP, PHONE, chromium
from camserver.app import CamServer
from camserver.config.writeback import ConfigFile
from conftest import FakeDetector, connect_camera, feeding

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")

SHIPPED = Path(__file__).resolve().parent.parent / "config.toml"
MSG = "document.querySelector('#settings-storage .form-message').textContent"


async def shots(browser, name: str, section: str | None) -> None:
    """`name` at both widths, with only `section` (and the restart offer) shown so a phone sees it at the top."""
    if section:
        await browser.js(f"document.querySelectorAll('.settings-body > *').forEach((el) => {{ el.style.display ="
                         f" el.id === '{section}' ? '' : 'none'; }})")
    await browser.screenshot(name, sizes=(DESKTOP, PHONE))
    await browser.js("document.querySelectorAll('.settings-body > *').forEach((el) => { el.style.display = ''; })")


async def test_settings_view_saves_the_recording_mode_shows_errors_and_offers_the_restart(tmp_path):
    path = tmp_path / "config.toml"
    shutil.copyfile(SHIPPED, path)
    file = ConfigFile(path, {"ingest": {"host": "127.0.0.1", "port": 0}, "storage": {"dir": str(tmp_path / "data")},
                             "http": {"host": "127.0.0.1", "port": 0, "mdns": False}, "motion": {"enabled": False}})
    file.apply({"notify": [{"urls": ["ntfy://127.0.0.1:9/porch"], "labels": ["person"]}]}, file.read()[1])
    config = file.effective(tomllib.loads(path.read_text()))
    async with CamServer(config, detector_factory=FakeDetector, config_file=file) as server, AsyncExitStack() as stack:
        base = f"http://127.0.0.1:{server.http_port}"
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/porch")
        stack.push_async_callback(cam.close)
        await stack.enter_async_context(feeding(cam, fps=5))
        browser = await stack.enter_async_context(chromium(f"{base}/#/settings"))
        await browser.wait("!document.getElementById('nav-settings').hidden", what="the admin's Settings link")
        await browser.wait("document.querySelector('#set-record-mode') !== null", what="the storage form")
        await browser.wait("document.querySelector('#settings-cameras select') !== null", what="the camera's mute menu")
        assert await browser.js("document.getElementById('settings-users') !== null"), "users.js mounts here"
        await shots(browser, "settings", None)
        await shots(browser, "settings-cameras", "settings-cameras")
        await shots(browser, "settings-notify", "settings-notify")
        await shots(browser, "settings-storage", "settings-storage")

        await browser.js("document.getElementById('set-record-mode').value = 'continuous'")
        await browser.click("#settings-storage button[type=submit]")
        await browser.wait(f"{MSG}.startsWith('Saved.')", what="saved")
        assert "record.mode" in await browser.js(MSG) and "Applied now" in await browser.js(MSG)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/config") as resp:
            assert (await resp.json())["file"]["record"]["mode"] == "continuous"
        assert server.recorder.config.mode == "continuous", "in effect without a restart"

        await browser.type("#set-storage-max-mb", "0")
        await browser.click("#settings-storage button[type=submit]")
        await browser.wait("document.getElementById('set-storage-max-mb-error').textContent.length > 0", what="the error")
        error = await browser.js("document.getElementById('set-storage-max-mb-error').textContent")
        assert "storage.max_mb" in error and "1.0" in error, error
        await shots(browser, "settings-invalid", "settings-storage")
        assert tomllib.loads(path.read_text())["storage"]["max_mb"] == 1024.0, "nothing written"

        await browser.js("document.querySelector('#settings-cameras input[type=checkbox]').click()")
        await browser.click("#settings-cameras button[type=submit]")
        await browser.wait("!document.getElementById('settings-restart').hidden", what="the restart offer")
        assert "cameras.porch" in await browser.js("document.getElementById('settings-restart').textContent")
        await browser.click("#settings-restart button")
        await browser.wait("document.querySelector('#settings-restart .form-message').textContent.includes('by hand')",
                           what="409 restart by hand (an in-process server)")
        await shots(browser, "settings-restart", "settings-cameras")
        # the notice is the server's word (GET /api/config's restart_needed), not the tab's memory: a reload keeps it
        await browser.js("(() => { window.beforeReload = true; location.reload(); })()")
        await browser.wait("!window.beforeReload && document.querySelector('#settings-cameras select') !== null",
                           what="the settings again, reloaded")
        await browser.wait("!document.getElementById('settings-restart').hidden", what="the restart offer after a reload")
        assert "cameras.porch.motion" in await browser.js("document.getElementById('settings-restart').textContent")
        assert browser.errors == [], browser.errors
