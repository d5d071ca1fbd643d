"""Roles and cross-site protection in headless Chromium through the real server: a page on another
origin cannot make the browser change a camera with its session cookie; an admin user changes
settings without being asked; a viewer is asked for the admin token (or told plainly that an admin
is needed where there is none)."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack

import pytest
from aiohttp import web

from browser import CHROMIUM, chromium
from conftest import FakeDetector, running_server, wait_for
from test_authz import ADMIN, ALICE, BOB, ROLES, camera

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")

# a text/plain form's body is `name=value\r\n`: this name and value make it valid JSON ("type" is ignored)
ATTACK = """<!doctype html><title>cute cats</title>
<form method="POST" action="{target}" enctype="text/plain">
<input type="hidden" name='{{"quality": 20, "type": "' value='"}}'>
</form><script>document.forms[0].submit()</script>"""


async def attacker_site(target: str) -> web.AppRunner:
    """Another origin (a second local port) serving a page that auto-submits a text/plain form to `target`."""
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=ATTACK.format(target=target), content_type="text/html")

    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def log_in(browser, user: tuple[str, str]) -> None:
    """Log in through the page's form and wait for the live view."""
    await browser.wait("!!document.getElementById('login-user')", what="the login form")
    await browser.type("#login-user", user[0])
    await browser.type("#login-password", user[1])
    await browser.key("Enter")
    await browser.wait("!document.body.classList.contains('logged-out') && !!document.querySelector('nav')",
                       what="the app after the login")


async def change_quality(browser, http_base: str, value: int) -> None:
    """Open porch's camera view and submit a new JPEG quality in its settings panel."""
    await browser.goto(f"{http_base}/#/camera/porch")
    await browser.wait("!!document.getElementById('set-quality') && !document.querySelector('[aria-labelledby=settings-title]').hidden",
                       what="the settings panel")
    await browser.js(f"(() => {{ const q = document.getElementById('set-quality'); q.value = '{value}';"
                     " q.dispatchEvent(new Event('input')); })()")
    await browser.click(".settings-form button[type=submit]")


async def test_a_form_on_another_origin_cannot_post_with_the_session_cookie():
    """Logged in as an admin (session cookie), the browser opens a page on another local port that auto-submits
    a JSON-looking text/plain form to the camera's control route: the browser sends the cookie (same site),
    the server answers 403 and the camera gets nothing, while the page's own write goes through."""
    users = {BOB[0]: {"password": BOB[1], "role": "admin"}}
    async with running_server(FakeDetector(), http={"users": users}) as srv, AsyncExitStack() as stack:
        received = await stack.enter_async_context(camera(srv))
        target = f"{srv.http}/api/cameras/porch/control"
        runner = await attacker_site(target)
        stack.push_async_callback(runner.cleanup)
        evil = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        browser = await stack.enter_async_context(chromium(f"{srv.http}/"))
        await log_in(browser, BOB)
        status = await browser.js("fetch('/api/cameras/porch/control', {method: 'POST', headers: {'Content-Type': "
                                  "'application/json'}, body: JSON.stringify({quality: 12})}).then((r) => r.status)")
        assert status == 202, "the page's own write, with the cookie alone, goes through"
        await wait_for(lambda: any(m.get("quality") == 12 for m in received), what="the page's own message")

        await browser.goto(evil)
        answer = await browser.wait(f"location.href === {json.dumps(target)} && document.body.innerText",
                                    what="the form's answer")
        assert json.loads(answer)["error"] == "cross-site request", answer
        await asyncio.sleep(0.3)  # a message that slipped through would have arrived by now
        assert [m.get("quality") for m in received if "quality" in m] == [12]
        assert srv.server.board.settings("porch")["desired"]["quality"] == 12


async def test_admin_user_is_never_asked_and_a_viewer_gets_the_admin_token_prompt():
    """With the admin token and users: an admin user's change goes through without a prompt; a viewer is asked
    for the admin token (a wrong one is refused and asked again), and with it the change reaches the camera."""
    async with running_server(FakeDetector(), http=ROLES) as srv, AsyncExitStack() as stack:
        received = await stack.enter_async_context(camera(srv))
        browser = await stack.enter_async_context(chromium(f"{srv.http}/"))
        await log_in(browser, BOB)
        await change_quality(browser, srv.http, 21)
        await browser.wait("document.querySelector('.settings-form .form-message').textContent.startsWith('Sent')",
                           what="the admin's change, with no prompt")
        assert await browser.js("!document.getElementById('secret-input')")
        await wait_for(lambda: any(m.get("quality") == 21 for m in received), what="the admin's message")

        await browser.click("#logout")
        await log_in(browser, ALICE)
        await change_quality(browser, srv.http, 22)
        prompt = await browser.wait("document.getElementById('secret-input') && document.querySelector('dialog').innerText",
                                    what="the admin token prompt")
        assert "alice, a viewer" in prompt and "admin token" in prompt and "admin user" in prompt
        await browser.screenshot("admin-prompt", ready="!!document.getElementById('secret-input')")
        await browser.type("#secret-input", "not-the-admin-token")
        await browser.key("Enter")
        await browser.wait("document.querySelector('dialog .form-error') && "
                           "document.querySelector('dialog .form-error').textContent.includes('not accepted')")
        await browser.type("#secret-input", ADMIN)
        await browser.key("Enter")
        await browser.wait("document.querySelector('.settings-form .form-message').textContent.startsWith('Sent')",
                           what="the viewer's change with the admin token")
        await wait_for(lambda: any(m.get("quality") == 22 for m in received), what="the message sent with the admin token")
        assert browser.errors == []


async def test_a_viewer_is_told_an_admin_is_needed_where_there_is_no_admin_token():
    """With admin users but no admin token, a viewer's change is not sent and the panel says why, without a
    prompt for a token that does not exist; the camera gets nothing."""
    users = {ALICE[0]: ALICE[1], BOB[0]: {"password": BOB[1], "role": "admin"}}
    async with running_server(FakeDetector(), http={"users": users}) as srv, AsyncExitStack() as stack:
        received = await stack.enter_async_context(camera(srv))
        browser = await stack.enter_async_context(chromium(f"{srv.http}/"))
        await log_in(browser, ALICE)
        await change_quality(browser, srv.http, 23)
        text = await browser.wait("(() => { const t = document.querySelector('.settings-form .form-message').textContent;"
                                  " return t.startsWith('Not sent') && t; })()", what="the refusal")
        assert "alice, a viewer" in text and "admin user" in text, text
        assert await browser.js("!document.getElementById('secret-input')")
        assert not any("quality" in m for m in received)
        await browser.goto(f"{srv.http}/#/system")
        await browser.wait("document.body.innerText.includes('Logged in as alice, a viewer.')", what="the session panel")


async def test_a_feed_reconnect_keeps_a_setting_being_changed():
    """The camera view refreshes board settings when its live feed reconnects (the server ends the stream every
    http.event_stream_max_s); a value the user has moved but not applied yet stays, and applying it sends it."""
    async with running_server(FakeDetector(), http={"event_stream_max_s": 1.0}) as srv, AsyncExitStack() as stack:
        received = await stack.enter_async_context(camera(srv))
        browser = await stack.enter_async_context(chromium(f"{srv.http}/#/camera/porch"))
        await browser.wait("!!document.getElementById('set-quality') && "
                           "!document.querySelector('[aria-labelledby=settings-title]').hidden", what="the settings panel")
        await browser.js("(() => { const q = document.getElementById('set-quality'); q.value = '33';"
                         " q.dispatchEvent(new Event('input')); window.__form = q.form; })()")
        # three stream ends, each a reconnect that refreshes the view
        await asyncio.sleep(3.5)
        assert await browser.js("document.getElementById('set-quality').value") == "33"
        assert await browser.js("document.getElementById('set-quality').form === window.__form"), "the form was redrawn"
        await browser.click(".settings-form button[type=submit]")
        await wait_for(lambda: any(m.get("quality") == 33 for m in received), what="the change the user made")
