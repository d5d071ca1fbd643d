"""[groups] through real servers and clients: /api/groups gives the groups in the file's order; a group saved by
PATCH /api/config is there within 2 s without a restart, survives one, and the shipped config.toml keeps its
comments; a bad group name is refused with the config's one line; /api/overview.mjpg?group=NAME composes only that
group's cameras (404 for a group the file does not have); in headless Chromium the live grid's chips show only a
group's tiles, the choice survives a reload, "All" shows every camera again."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
from contextlib import AsyncExitStack

import pytest

from camserver.config.writeback import ConfigFile

from browser import CHROMIUM, DESKTOP, PHONE, chromium
from conftest import FakeDetector, connect_camera, decode, feeding, mjpeg, running_server, wait_for
from test_configapi import SHIPPED, comment_lines, patch, read_config, served, shipped_copy
from test_browser_settings import shots
from test_settings_live import poll

CAMERAS = ("door", "yard", "shed")


async def test_a_group_saved_applies_live_survives_a_restart_and_keeps_the_comments(tmp_path, http):
    file = shipped_copy(tmp_path)
    shipped = comment_lines(SHIPPED.read_text())
    async with served(file) as (_, base):
        assert (await poll(http, f"{base}/api/groups", lambda body: body == {"groups": []})) < 2.0
        version = (await read_config(http, base))["version"]
        status, body = await patch(http, base, {"groups": {"Outside": ["door", "yard"], "Back of the house": ["shed"]}},
                                   version)
        assert status == 200, body
        assert body["applied_live"] == ["groups.Back of the house", "groups.Outside"] and body["restart_needed"] == [], body
        expected = {"groups": [{"name": "Outside", "cameras": ["door", "yard"]},
                               {"name": "Back of the house", "cameras": ["shed"]}]}
        assert (await poll(http, f"{base}/api/groups", lambda b: b == expected)) < 2.0
        assert (await read_config(http, base))["restart_needed"] == []
    assert comment_lines(file.path.read_text()) == shipped, "every comment of the shipped file stays"
    async with served(file) as (_, base):
        await poll(http, f"{base}/api/groups", lambda b: b == expected)


@pytest.mark.parametrize("name", [" Outside", "x" * 33, "Out\x1bside"])
async def test_a_bad_group_name_is_refused_with_one_line(tmp_path, http, name):
    file = shipped_copy(tmp_path)
    before = file.path.read_bytes()
    async with served(file) as (_, base):
        version = (await read_config(http, base))["version"]
        status, body = await patch(http, base, {"groups": {name: ["door"]}}, version)
    assert status == 400, body
    assert len(body["problems"]) == 1 and body["problems"][0].startswith("config error: groups = "), body
    assert "1 to 32 printable characters" in body["problems"][0] and "\x1b" not in body["problems"][0]
    assert file.path.read_bytes() == before


async def test_a_groups_overview_composes_only_its_cameras(http):
    """Three cameras: the overview of all is 2x2 cells (640x480), the group of one camera one cell (320x240), of two
    2x1 cells (640x240); an unknown group: 404 naming the known ones."""
    async with running_server(FakeDetector(), groups={"Outside": ["door", "yard"], "Shed": ["shed"]}) as srv, \
            AsyncExitStack() as stack:
        for name in CAMERAS:
            cam = await connect_camera(srv.ws(name))
            stack.push_async_callback(cam.close)
            await stack.enter_async_context(feeding(cam, fps=5, width=640, height=480))
        await wait_for(lambda: len(list(srv.server.hub)) == 3, what="three cameras")
        for query, shape in (("", (480, 640, 3)), ("?group=Shed", (240, 320, 3)), ("?group=Outside", (240, 640, 3))):
            async with mjpeg(http, f"{srv.http}/api/overview.mjpg{query}") as reader:
                assert decode((await reader.next()).jpeg).shape == shape, query
        async with http.get(f"{srv.http}/api/overview.mjpg?group=Garage") as resp:
            assert resp.status == 404 and "known: Outside, Shed" in await resp.text()
        assert set(srv.server.viewer_app.grid.group_overviews) == {"Shed", "Outside"}


TILES = "[...document.querySelectorAll('.tile')].map(t => t.dataset.camera).sort().join(',')"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
async def test_the_grids_chips_show_a_group_and_the_choice_survives_a_reload():
    async with running_server(FakeDetector(), groups={"Outside": ["door", "yard"], "Garage": ["car"]}) as srv, \
            AsyncExitStack() as stack:
        for name in CAMERAS:
            cam = await connect_camera(srv.ws(name))
            stack.push_async_callback(cam.close)
            await stack.enter_async_context(feeding(cam, fps=5))
        browser = await stack.enter_async_context(chromium(f"{srv.http}/#/live"))
        await browser.wait(f"{TILES} === 'door,shed,yard'", what="every camera's tile")
        chips = await browser.js("[...document.querySelectorAll('.group-chip')].map(c => c.textContent)")
        assert chips == ["All", "Outside", "Garage"], chips
        assert await browser.js("document.querySelector('.group-chips').getAttribute('aria-label')") == "Camera groups"
        await browser.click(".group-chip[data-group=Outside]")
        await browser.wait(f"{TILES} === 'door,yard'", what="only Outside's tiles")
        assert await browser.js("document.querySelector('.view-live .view-sub').textContent") == "2 of 3 cameras"
        assert await browser.js("document.querySelector('.group-chip[data-group=Outside]').getAttribute('aria-pressed')") == "true"
        await browser.screenshot("live-group", sizes=(DESKTOP, PHONE))
        await browser.js("(() => { window.beforeReload = true; location.reload(); })()")
        await browser.wait(f"!window.beforeReload && {TILES} === 'door,yard'", what="Outside again after a reload")
        await browser.click(".group-chip[data-group=Garage]")
        await browser.wait("document.querySelector('.view-live .state-empty') !== null",
                           what="the empty group's message")
        assert "No camera of “Garage” is known yet" in await browser.js("document.querySelector('.view-live').textContent")
        await browser.screenshot("live-group-empty", sizes=(DESKTOP, PHONE))
        await browser.click(".group-chip[data-group='']")
        await browser.wait(f"{TILES} === 'door,shed,yard'", what="every tile again")
        assert browser.errors == [], browser.errors


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
async def test_a_group_added_renamed_and_removed_from_the_settings_view(tmp_path, http):
    """The Settings view's Camera groups: add a group, name it, tick two cameras, Save: applied live (no restart),
    /api/groups has it; rename it: the old name is gone; remove it: no group left; comments kept throughout."""
    shutil.copyfile(SHIPPED, tmp_path / "config.toml")  # no token: the browser is an admin
    file = ConfigFile(tmp_path / "config.toml", {"ingest": {"host": "127.0.0.1", "port": 0},
                                                 "storage": {"dir": str(tmp_path / "data")}, "motion": {"enabled": False},
                                                 "http": {"host": "127.0.0.1", "port": 0, "mdns": False}})
    shipped = comment_lines(SHIPPED.read_text())
    async with served(file) as (server, base), AsyncExitStack() as stack:
        for name in CAMERAS:
            cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/{name}")
            stack.push_async_callback(cam.close)
            await stack.enter_async_context(feeding(cam, fps=2))
        await wait_for(lambda: len(list(server.hub)) == 3, what="three cameras")
        browser = await stack.enter_async_context(chromium(f"{base}/#/settings"))
        message = "document.querySelector('#settings-groups .form-message[role=status]').textContent"
        await browser.wait("document.querySelector('#settings-groups') !== null", what="the groups form")
        await browser.click("#settings-groups .settings-actions button[type=button]")
        await browser.wait("document.getElementById('set-group-0-name') !== null", what="a new group's row")
        await browser.type("#set-group-0-name", "Outside")
        await browser.click("label[for=set-group-0-door]")
        await browser.click("label[for=set-group-0-yard]")
        await shots(browser, "settings-groups", "settings-groups")
        await browser.click("#settings-groups button[type=submit]")
        await browser.wait(f"{message}.startsWith('Saved.')", what="saved")
        assert "Applied now: groups.Outside." in await browser.js(message)
        await poll(http, f"{base}/api/groups", lambda b: b == {"groups": [{"name": "Outside", "cameras": ["door", "yard"]}]},
                   timeout=2.0)
        await browser.type("#set-group-0-name", "Front")
        await browser.click("#settings-groups button[type=submit]")
        await browser.wait(f"{message}.includes('groups.Front')", what="renamed")
        await poll(http, f"{base}/api/groups", lambda b: b == {"groups": [{"name": "Front", "cameras": ["door", "yard"]}]},
                   timeout=2.0)
        # two rows of one name: refused on the page (one table key each), nothing sent
        before = file.path.read_bytes()
        await browser.click("#settings-groups .settings-actions button[type=button]")
        await browser.wait("document.getElementById('set-group-1-name') !== null", what="a second group's row")
        await browser.type("#set-group-1-name", "Front")
        await browser.click("#settings-groups button[type=submit]")
        problem = "document.querySelector('#settings-groups .form-error[role=alert]').textContent"
        await browser.wait(f"{problem}.includes('two groups are named')", what="the duplicate refused")
        assert file.path.read_bytes() == before
        await browser.click("#settings-groups .settings-group:nth-of-type(2) button.danger")
        await browser.click("#settings-groups .settings-group button.danger")
        await browser.click("#settings-groups button[type=submit]")
        await browser.wait(f"{message}.includes('groups.Front') && !{message}.includes('groups.Outside')", what="removed")
        await poll(http, f"{base}/api/groups", lambda b: b == {"groups": []}, timeout=2.0)
        assert browser.errors == [], browser.errors
    assert comment_lines(file.path.read_text()) == shipped


@pytest.mark.parametrize("name, labelled", [("Front door", True), ("Vordertür", False)])
async def test_the_overview_labels_a_cell_with_the_cameras_name_where_its_font_can(http, name, labelled):
    """A cell's label box is 12 + 9 px a character wide, black over the picture: "Front door" (10 characters) covers
    x = 80 on the cell's top row, the id "door" (4) does not. A name the font cannot draw (ü) falls back to the id."""
    level = cv2.imencode(".jpg", np.full((240, 320, 3), 200, np.uint8))[1].tobytes()
    async with running_server(None, cameras={"door": {"name": name}}) as srv:
        cam = await connect_camera(srv.ws("door"))
        try:
            for _ in range(3):
                await cam.send(level)
            await wait_for(lambda: srv.server.hub.get("door") is not None and srv.server.hub.get("door").raw.frame is not None,
                           what="the camera's frame")
            async with mjpeg(http, f"{srv.http}/api/overview.mjpg") as reader:
                image = decode((await reader.next()).jpeg)
        finally:
            await cam.close()
    assert image.shape == (240, 320, 3)
    top = int(image[2, 80].mean())
    assert (top < 40) if labelled else (top > 150), (name, top)
