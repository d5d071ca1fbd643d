"""The tile's mute menu and badge, and the live view's menu for all cameras, in headless Chromium through
the real server, driven from the keyboard. Screenshots: live-muted-*.png (test-artifacts/screenshots/)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest

from browser import CHROMIUM, chromium
from camserver.integrations.mute import ALL
from conftest import FakeDetector, connect_camera, feeding, running_server, wait_for
from test_browser import accessible, clean

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")

BADGES = "JSON.stringify([...document.querySelectorAll('.tile .badge-muted')].map(b => b.hidden ? '' : b.textContent))"


async def test_mute_a_tile_for_30_min_then_all_until_turned_on_then_all_on(tmp_path):
    """ArrowDown on porch's menu mutes it for 30 min (its badge says until when, yard's says nothing);
    End on the all-cameras menu mutes every camera until turned on; Home turns every mute off."""
    async with running_server(FakeDetector()) as srv, AsyncExitStack() as stack:
        for name in ("porch", "yard"):
            cam = await connect_camera(srv.ws(name))
            stack.push_async_callback(cam.close)
            await stack.enter_async_context(feeding(cam, fps=5))
        browser = await stack.enter_async_context(chromium(f"{srv.http}/"))
        mute = srv.server.mute
        await browser.wait("document.querySelectorAll('.tile .mute-menu').length === 2", what="two tiles with menus")

        await browser.js("document.querySelector('.tile[data-camera=porch] .mute-menu').focus()")
        await browser.key("ArrowDown")
        await wait_for(lambda: mute.muted("porch"), what="porch muted from the page")
        assert 1790 < mute.state("porch")["muted_for_s"] <= 1800 and not mute.muted("yard")
        await browser.wait(f"(() => {{ const b = JSON.parse({BADGES}); "
                           "return b[0].startsWith('muted until ') && b[1] === ''; })()", what="porch's badge")
        await browser.js("document.activeElement.blur()")
        await browser.screenshot("live-muted", ready="document.querySelectorAll('.tile img').length === 2")
        await accessible(browser)

        await browser.js("document.querySelector('.mute-all .mute-menu').focus()")
        await browser.key("End", key_code=35)
        await wait_for(lambda: ALL in mute.mutes and mute.mutes[ALL].deadline is None, what="all muted from the page")
        await browser.wait("JSON.parse(" + BADGES + ")[1] === 'muted (all cameras)'", what="yard's badge")
        await browser.wait("!document.querySelector('.mute-all .badge-muted').hidden", what="the all-cameras badge")
        await browser.js("document.activeElement.blur()")
        await browser.screenshot("live-muted-all", ready="document.querySelectorAll('.tile img').length === 2",
                                 dark=True)

        await browser.js("document.querySelector('.mute-all .mute-menu').focus()")
        await browser.key("Home", key_code=36)
        await wait_for(lambda: not mute.mutes, what="every mute off from the page")
        await browser.wait("JSON.parse(" + BADGES + ").every(b => b === '')", what="no badges")
        clean(browser)
