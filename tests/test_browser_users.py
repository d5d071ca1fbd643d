"""The "Users and tokens" section in headless Chromium through a real server: an admin adds a user from the
page (config.toml gets a hash, never the password), stays logged in, and the new user logs in with it."""

from __future__ import annotations

import tomllib
from contextlib import AsyncExitStack

import pytest

from browser import CHROMIUM, chromium
from camserver.app import CamServer
from camserver.passwords import hash_password, is_hashed, verify
from conftest import FakeDetector
from test_browser import accessible
from test_browser_authz import log_in
from test_users import users_file

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")

STATUS = "document.querySelector('.users-panel [role=status]').textContent"
ONLY_SECTION = ("document.querySelectorAll('.view-system > :not(.users-panel):not(.view-head)')"
                ".forEach((e) => { e.hidden = true; })")


async def test_an_admin_adds_a_user_from_the_page_and_the_user_logs_in(tmp_path):
    file = users_file(tmp_path, f'{{ root = {{ password = "{hash_password("root-pass-1234")}", role = "admin" }}, '
                                f'bob = "bob-plain-pw" }}')
    config = file.effective(tomllib.loads(file.path.read_text()))
    async with CamServer(config, detector_factory=FakeDetector, config_file=file) as server, AsyncExitStack() as stack:
        base = f"http://127.0.0.1:{server.http_port}"
        browser = await stack.enter_async_context(chromium(f"{base}/"))
        await log_in(browser, ("root", "root-pass-1234"))
        await browser.goto(f"{base}/#/settings")
        await browser.wait("document.querySelectorAll('.users-table tbody tr').length === 2", what="the users listed")
        rows = await browser.js("[...document.querySelectorAll('.users-table tbody tr')].map((r) => r.textContent)")
        assert "plain text" in rows[0] and "bob" in rows[0] and "hashed" in rows[1] and "root" in rows[1], rows

        await browser.type("#users-new-name", "carol")
        await browser.type("#users-new-password", "carol-pass-42")
        await browser.click(".users-add button[type=submit]")
        await browser.wait(f"{STATUS}.startsWith('carol added')", what="the user added", timeout=30)
        assert "applied at once" in await browser.js(STATUS)
        await browser.wait("document.querySelectorAll('.users-table tbody tr').length === 3",
                           what="the list read again, the admin still logged in")
        text = file.path.read_text()
        assert "carol-pass-42" not in text and "(hidden)" not in text
        stored = tomllib.loads(text)["http"]["users"]["carol"]["password"]
        assert is_hashed(stored) and verify(stored, "carol-pass-42")
        await accessible(browser)
        await browser.js(ONLY_SECTION)
        shots = await browser.screenshot("users-section", ready="!!document.querySelector('.users-table')")
        assert all(p.stat().st_size > 5000 for p in shots)

        await browser.js("fetch('/api/logout', {method: 'POST', headers: {'Content-Type': 'application/json'}})"
                         ".then(() => location.reload())")
        await log_in(browser, ("carol", "carol-pass-42"))
        who = await browser.js("fetch('/api/session').then((r) => r.json())")
        assert who["user"] == "carol" and who["role"] == "viewer" and not who["can_write"]
