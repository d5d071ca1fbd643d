"""The zone editor's Save in headless Chromium through a real server started from the shipped config.toml:
points added with the keyboard alone, saved into the file (comments kept) and in effect; a refused save shows
the config's own lines; a file changed behind the editor's back is said so and loaded again."""

from __future__ import annotations

import shutil
import tomllib
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from browser import CHROMIUM, chromium
from camserver.app import CamServer
from camserver.config.writeback import ConfigFile
from conftest import FakeDetector, connect_camera, feeding
from test_browser import accessible

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")

SHIPPED = Path(__file__).resolve().parent.parent / "config.toml"
STEPS = {"camera": "porch", "name": "steps", "points": [[0.1, 0.5], [0.5, 0.5], [0.5, 0.95], [0.1, 0.95]]}
SAVED = "document.getElementById('zones-saved').textContent"


def comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


async def keys(browser, key: str, times: int = 1) -> None:
    for _ in range(times):
        await browser.key(key)


async def test_zone_editor_saves_keyboard_drawn_zone_refuses_and_notices_a_changed_file(tmp_path):
    """Keyboard only: focus the picture, arrow keys and Enter draw a 3-point zone; Save writes it into config.toml
    (every comment kept) and the events stage has it at once; deleting a zone a notify rule names is refused
    with the config's line; a file changed since the editor loaded is said so and its shapes shown."""
    path = tmp_path / "config.toml"
    shutil.copyfile(SHIPPED, path)
    shipped_comments = comment_lines(path.read_text())
    file = ConfigFile(path, {"ingest": {"host": "127.0.0.1", "port": 0}, "storage": {"dir": str(tmp_path / "data")},
                             "http": {"host": "127.0.0.1", "port": 0, "mdns": False}, "motion": {"enabled": False}})
    file.apply({"events": {"zones": [STEPS]}, "notify": [{"urls": ["ntfy://127.0.0.1:9/porch"], "zones": ["steps"]}]},
               file.read()[1])
    config = file.effective(tomllib.loads(path.read_text()))
    async with CamServer(config, detector_factory=FakeDetector, config_file=file) as server, AsyncExitStack() as stack:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/porch")
        stack.push_async_callback(cam.close)
        await stack.enter_async_context(feeding(cam, fps=5))
        browser = await stack.enter_async_context(chromium(f"http://127.0.0.1:{server.http_port}/#/zones/porch"))
        await browser.wait("document.querySelector('.frame-editor img').naturalWidth === 320", what="the picture")
        await browser.wait("document.querySelectorAll('.handle').length === 4", what="the configured zone's points")

        await browser.click(".zones-side button.primary")  # New zone
        await browser.js("document.querySelector('.frame-editor').focus()")
        await browser.key("Enter")  # the cursor starts in the middle
        await keys(browser, "ArrowRight", 20)
        await browser.key("Enter")
        await keys(browser, "ArrowDown", 20)
        await browser.key("Enter")
        await browser.wait("document.querySelectorAll('.handle').length === 7", what="three points from the keyboard")
        assert await browser.js("document.activeElement === document.querySelector('.frame-editor')"), \
            "the focus stays on the picture for the next point"
        assert "Added point 3" in await browser.js("document.getElementById('zones-cursor').textContent")
        await browser.screenshot("zones-keyboard", sizes=((1400, 1000),))
        await browser.js("document.querySelector('.frame-editor').focus()")  # the screenshot's resize may blur it

        await browser.click("#zones-save")
        await browser.wait(f"{SAVED}.startsWith('Saved.')", what="saved")
        assert "In effect now" in await browser.js(SAVED)
        await accessible(browser)
        await browser.screenshot("zones-saved", ready="document.querySelector('.frame-editor img').naturalWidth > 0")
        saved = tomllib.loads(path.read_text())["events"]["zones"]
        assert [z["name"] for z in saved] == ["steps", "zone-2"]
        assert saved[1]["camera"] == "porch" and saved[1]["points"] == [[0.5, 0.5], [0.7, 0.5], [0.7, 0.7]]
        assert comment_lines(path.read_text()) == shipped_comments
        assert [z.name for z in server.events.zones["porch"]] == ["steps", "zone-2"], "in effect without a restart"

        await browser.js("document.getElementById('shape-0').click()")  # steps, which [[notify]] names
        await browser.click(".shape-details button.danger")
        await browser.wait("document.querySelectorAll('.handle').length === 3")
        await browser.click("#zones-save")
        await browser.wait("document.querySelectorAll('#zones-save-errors li').length > 0", what="the refusal")
        refusal = await browser.js("document.getElementById('zones-save-errors').textContent")
        assert "notify[0].zones" in refusal and "steps" in refusal, refusal
        await browser.screenshot("zones-save-refused")
        assert [z["name"] for z in tomllib.loads(path.read_text())["events"]["zones"]] == ["steps", "zone-2"]

        # another writer changes the file: the editor's next save says so and shows the file's shapes
        file.apply({"events": {"zones": [STEPS, {**STEPS, "name": "gate", "points": [[0, 0], [0.2, 0], [0.2, 0.2]]}]}},
                   file.read()[1])
        await browser.click("#zones-save")
        await browser.wait(f"{SAVED}.includes('changed since')", what="the changed file noticed")
        await browser.wait("document.querySelectorAll('.handle').length === 7", what="the file's shapes loaded")
        assert "gate" in await browser.js("document.querySelector('.shape-list').textContent")
        await browser.screenshot("zones-save-stale")
        assert browser.errors == [], browser.errors
        # the refused save is the only failed request: the page showed its lines instead
        assert [e for e in browser.network_errors if "status of 400" not in e or "/api/config" not in e] == []
        assert len(browser.network_errors) == 1, browser.network_errors
    assert [z["name"] for z in tomllib.loads(path.read_text())["events"]["zones"]] == ["steps", "gate"]
