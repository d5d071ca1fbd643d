"""Roles and cross-site protection on the viewer port: the write permission (http.admin_token, admin
users, admin page sessions), the fallback without any admin credential, and the checks every write
passes (Sec-Fetch-Site, Origin, JSON bodies), with real aiohttp requests against a running server."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from contextlib import asynccontextmanager, suppress
from typing import Any, AsyncIterator

import aiohttp
import pytest
from yarl import URL

from camserver.config import ConfigError, from_mapping
from camserver.web.session import COOKIE, SessionSigner
from camserver.web.writes import parse_origin, same_origin
from conftest import FakeDetector, connect_camera, running_server, wait_for
from test_board import make_image
from test_webapp_api import record

VIEWER = "viewer-secret-42"
ADMIN = "admin-secret-42"
ALICE = ("alice", "wonderland-42")  # a viewer
BOB = ("bob", "builder-4242")  # an admin
ROLES = {"token": VIEWER, "admin_token": ADMIN,
         "users": {ALICE[0]: ALICE[1], BOB[0]: {"password": BOB[1], "role": "admin"}}}
CONTROL = "/api/cameras/porch/control"


# --- configuration ---------------------------------------------------------------------------------

def test_users_take_a_role_and_plain_passwords_stay_viewers():
    """`alice = "pw"` is a viewer, `bob = { password, role = "admin" }` an admin; the admin token is kept."""
    http = from_mapping({"http": ROLES}).http
    assert http.passwords == {"alice": ALICE[1], "bob": BOB[1]}
    assert http.admins == frozenset({"bob"})
    assert http.admin_token == ADMIN
    assert from_mapping({}).http.admin_token == "" and from_mapping({}).http.users == ()


@pytest.mark.parametrize("http, key, words", [
    ({"users": {"bob": {"password": "pw-123456", "role": "root"}}}, "http.users.bob.role", "viewer, admin"),
    ({"users": {"bob": {"pasword": "pw-123456"}}}, "http.users.bob.pasword", "unknown key"),
    ({"users": {"bob": {"role": "admin"}}}, "http.users.bob.password", "non-empty"),
    ({"users": {"bob": ""}}, "http.users.bob", "non-empty"),
    ({"users": {"bob": 42}}, "http.users.bob", "role"),
    ({"users": {"a:b": "pw-123456"}}, "http.users.a:b", "without ':'"),
    ({"users": "alice"}, "http.users", "password"),
    ({"admin_token": "short"}, "http.admin_token", "at least 8"),
    ({"admin_token": VIEWER, "token": VIEWER}, "http.admin_token", "differ from http.token"),
])
def test_bad_roles_and_admin_tokens_name_the_key(http, key, words):
    """Each bad users entry or admin token is one ConfigError naming the dotted key and what is allowed."""
    with pytest.raises(ConfigError) as info:
        from_mapping({"http": http})
    assert info.value.key == key and words in str(info.value)
    if http.get("token"):
        assert VIEWER not in str(info.value), "the error line does not show the secret"


def test_session_cookies_carry_the_role_and_end_when_roles_change():
    """A cookie says viewer or admin under its MAC; a changed role or admin token ends every session; a cookie
    from before roles still works on a server that configures none."""
    users = {"alice": ALICE[1], "bob": BOB[1]}
    signer = SessionSigner(b"s" * 32, VIEWER, users, admin_token=ADMIN, admins=frozenset({"bob"}))
    admin = signer.verify(signer.issue("bob", "admin"))
    assert admin is not None and admin.admin and admin.user == "bob"
    value = signer.issue("alice")
    assert not signer.verify(value).admin
    issued, nonce, name, role, mac = value.split(".")
    assert role == "viewer"
    assert signer.verify(".".join((issued, nonce, name, "admin", mac))) is None, "the role is under the MAC"
    for other in (SessionSigner(b"s" * 32, VIEWER, users, admin_token=ADMIN),  # bob demoted
                  SessionSigner(b"s" * 32, VIEWER, users, admin_token="another-admin-1", admins=frozenset({"bob"}))):
        assert other.verify(value) is None
    plain = SessionSigner(b"s" * 32, VIEWER, users)
    payload = f"{int(time.time())}.nonce.{base64.urlsafe_b64encode(b'alice').decode().rstrip('=')}"
    old = f"{payload}.{plain._mac(payload)}"  # the format before roles: <issued>.<nonce>.<user>.<mac>
    assert plain.verify(old).user == "alice" and not plain.verify(old).admin
    assert signer.verify(old) is None, "with an admin configured, the key differs"


# --- the server ------------------------------------------------------------------------------------

@asynccontextmanager
async def camera(srv: Any, camera_id: str = "porch") -> AsyncIterator[list[dict]]:
    """A connected camera whose received control messages are collected."""
    ws = await connect_camera(srv.ws(camera_id))
    received: list[dict] = []

    async def read() -> None:
        async for message in ws:
            if isinstance(message, str):
                received.append(json.loads(message))

    task = asyncio.create_task(read())
    try:
        await wait_for(lambda: (c := srv.server.hub.get(camera_id)) is not None and c.connected, what="the camera")
        yield received
    finally:
        await ws.close()
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def basic(user: tuple[str, str]) -> dict[str, str]:
    """An Authorization header for basic auth."""
    return {"Authorization": "Basic " + base64.b64encode(":".join(user).encode()).decode()}


async def login(base: str, body: dict) -> str:
    """Log in and return the session cookie's value."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post(f"{base}/api/login", json=body) as resp:
            assert resp.status == 200, await resp.text()
        return browser.cookie_jar.filter_cookies(URL(base))[COOKIE].value


async def test_writes_need_an_admin_credential_and_viewers_get_403(http):
    """With an admin token and an admin user configured: no credential 401, every viewer credential 403 (the
    admin token in a URL too), and nothing reaches the camera; the admin token as a header, an admin user and
    an admin's page session (user or admin-token login) are let through; reads accept them all."""
    async with running_server(FakeDetector(), http=ROLES) as srv, camera(srv) as received:
        base = srv.http
        alice_cookie = await login(base, {"user": ALICE[0], "password": ALICE[1]})
        bob_cookie = await login(base, {"user": BOB[0], "password": BOB[1]})
        admin_cookie = await login(base, {"token": ADMIN})

        async with http.post(f"{base}{CONTROL}", json={"quality": 20}) as resp:
            assert resp.status == 401 and "WWW-Authenticate" in resp.headers
            assert "admin token" in (await resp.json())["detail"]
        viewers = {
            "viewer token": ({"Authorization": f"Bearer {VIEWER}"}, ""),
            "viewer ?token=": ({}, f"?token={VIEWER}"),
            "alice basic": (basic(ALICE), ""),
            "alice session": ({"Cookie": f"{COOKIE}={alice_cookie}"}, ""),
            "admin ?token=": ({}, f"?token={ADMIN}"),
        }
        for name, (headers, query) in viewers.items():
            async with http.post(f"{base}{CONTROL}{query}", json={"quality": 20}, headers=headers) as resp:
                body = await resp.json()
                assert resp.status == 403 and body["error"] == "write permission required", name
                assert "admin" in body["detail"], name
        async with http.post(f"{base}{CONTROL}?token={ADMIN}", json={"quality": 20}) as resp:
            assert "reading only" in (await resp.json())["detail"], "says why the admin token in a URL is not enough"
        async with http.post(f"{base}{CONTROL}", json={"quality": 20}, headers=basic(ALICE)) as resp:
            assert "'alice'" in (await resp.json())["detail"]
        await asyncio.sleep(0)
        assert not any("quality" in m for m in received)

        admins = {
            "admin token": {"Authorization": f"Bearer {ADMIN}"},
            "bob basic": basic(BOB),
            "bob session": {"Cookie": f"{COOKIE}={bob_cookie}"},
            "admin-token session": {"Cookie": f"{COOKIE}={admin_cookie}"},
            "viewer session beside the admin token": {"Cookie": f"{COOKIE}={alice_cookie}", "Authorization": f"Bearer {ADMIN}"},
        }
        for quality, (name, headers) in enumerate(admins.items(), start=10):
            async with http.post(f"{base}{CONTROL}", json={"quality": quality}, headers=headers) as resp:
                assert resp.status == 202, (name, await resp.text())
            await wait_for(lambda q=quality: any(m.get("quality") == q for m in received), what=f"{name}'s message")
            async with http.get(f"{base}/api/cameras", headers=headers) as resp:
                assert resp.status == 200, name
        async with http.get(f"{base}/api/cameras?token={ADMIN}") as resp:
            assert resp.status == 200, "the admin token in a URL still reads"

        for cookie, role in ((alice_cookie, "viewer"), (bob_cookie, "admin"), (admin_cookie, "admin")):
            async with http.get(f"{base}/api/session", headers={"Cookie": f"{COOKIE}={cookie}"}) as resp:
                session = await resp.json()
            assert session["role"] == role and session["can_write"] is (role == "admin")
            assert session["admin_methods"] == ["token", "password"]


async def test_every_write_route_needs_the_permission(http):
    """DELETE of an event, the test notification, the firmware upload, delete and update: 403 for a viewer,
    through the guard (to the route's own answer) for an admin; the event is still there after the 403."""
    async with running_server(FakeDetector(), http=ROLES) as srv:
        base = srv.http
        event = record(1, "door", "person", [], time.time())
        srv.server.events.store.save(event, None, time.time())
        form = aiohttp.FormData()
        form.add_field("file", make_image(), filename="cam-2.0.0.bin", content_type="application/octet-stream")
        writes = [
            ("DELETE", f"/api/events/{event['id']}", {}, 200),
            ("POST", "/api/notify/test", {"json": {}}, 404),  # no [[notify]] targets: the route's own 404
            ("POST", "/api/firmware", {"data": form}, 201),
            ("POST", "/api/cameras/porch/firmware", {"json": {"image": "cam-2.0.0.bin"}}, 404),  # unknown camera
            ("DELETE", "/api/firmware/cam-2.0.0.bin", {}, 200),
        ]
        for method, path, kwargs, admin_status in writes:
            async with http.request(method, f"{base}{path}", headers=basic(ALICE), **kwargs) as resp:
                assert resp.status == 403, (method, path)
            if path.startswith("/api/events/"):
                assert srv.server.events.store.get(event["id"]) is not None
            if "data" in kwargs:  # a FormData is spent once sent
                kwargs = {"data": aiohttp.FormData()}
                kwargs["data"].add_field("file", make_image(), filename="cam-2.0.0.bin",
                                         content_type="application/octet-stream")
            async with http.request(method, f"{base}{path}", headers={"Authorization": f"Bearer {ADMIN}"}, **kwargs) as resp:
                assert resp.status == admin_status, (method, path, await resp.text())
        assert srv.server.events.store.get(event["id"]) is None


async def test_without_an_admin_credential_whoever_may_read_may_write(http):
    """No admin token and no admin user: today's rule. With a viewer token, it may write and nothing else may;
    on an open server, anyone may (from a script without a browser's headers)."""
    async with running_server(FakeDetector(), http={"token": VIEWER, "users": {ALICE[0]: ALICE[1]}}) as srv, \
            camera(srv) as received:
        async with http.post(f"{srv.http}{CONTROL}", json={"quality": 20}) as resp:
            assert resp.status == 401
        for headers in ({"Authorization": f"Bearer {VIEWER}"}, basic(ALICE)):
            async with http.post(f"{srv.http}{CONTROL}", json={"quality": 21}, headers=headers) as resp:
                assert resp.status == 202
        async with http.get(f"{srv.http}/api/session", headers=basic(ALICE)) as resp:
            assert (await resp.json())["can_write"] is True
    async with running_server(FakeDetector()) as srv, camera(srv) as received:
        async with http.post(f"{srv.http}{CONTROL}", json={"quality": 22}) as resp:
            assert resp.status == 202
        await wait_for(lambda: any(m.get("quality") == 22 for m in received), what="the message")


async def test_admin_token_alone_keeps_reads_open_and_guards_writes(http):
    """With only http.admin_token: reads stay open, writes need it; the page can log in with it (an admin
    session) though viewers need no login."""
    async with running_server(FakeDetector(), http={"admin_token": ADMIN}) as srv, camera(srv):
        base = srv.http
        async with http.get(f"{base}/api/cameras") as resp:
            assert resp.status == 200
        async with http.get(f"{base}/api/session") as resp:
            session = await resp.json()
        assert session["auth_required"] is False and session["can_write"] is False
        assert session["admin_methods"] == ["token"] and session["methods"] == ["token"]
        async with http.post(f"{base}{CONTROL}", json={"quality": 20}) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        cookie = await login(base, {"token": ADMIN})
        async with http.post(f"{base}{CONTROL}", json={"quality": 20}, headers={"Cookie": f"{COOKIE}={cookie}"}) as resp:
            assert resp.status == 202
        async with http.post(f"{base}/api/login", json={"token": "not-the-admin"}) as resp:
            assert resp.status == 401


async def test_admin_sessions_end_when_the_user_is_demoted(http, tmp_path):
    """An admin's page session is refused after a restart where the user became a viewer."""
    storage = {"dir": str(tmp_path / "data")}
    async with running_server(FakeDetector(), http=ROLES, storage=storage) as srv:
        cookie = await login(srv.http, {"user": BOB[0], "password": BOB[1]})
    demoted = {**ROLES, "users": {ALICE[0]: ALICE[1], BOB[0]: BOB[1]}}
    async with running_server(FakeDetector(), http=demoted, storage=storage) as srv:
        async with http.get(f"{srv.http}/api/cameras", headers={"Cookie": f"{COOKIE}={cookie}"}) as resp:
            assert resp.status == 401


# --- cross-site requests ---------------------------------------------------------------------------

def test_same_origin_compares_scheme_host_and_port():
    """Origin against Host: default ports, case, IPv6, an allowed public_url; "null" and junk are never equal."""
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert same_origin("http://CAMS.local", "cams.local") and same_origin("http://cams.local", "cams.local:80")
    assert same_origin("https://cams.example.org", "cams.example.org")  # a TLS proxy passing Host on
    assert same_origin("http://[::1]:8080", "[::1]:8080")
    assert not same_origin("http://127.0.0.1:9999", "127.0.0.1:8080")
    assert not same_origin("http://evil.example", "127.0.0.1:8080")
    assert not same_origin("http://cams.local.evil.example", "cams.local")
    assert not same_origin("null", "127.0.0.1:8080") and not same_origin("http://x:99999", "x:99999")
    assert same_origin("https://cams.example.org", "127.0.0.1:8080", ["https://cams.example.org/"])
    assert parse_origin("ftp://x") is None and parse_origin("https://a:1") == ("https", "a", 1)


async def test_cross_site_writes_are_refused_and_nothing_reaches_the_camera(http):
    """On an open server (the worst case): a JSON-looking text/plain or form body gets 415, a cross-site
    Origin or Sec-Fetch-Site (another port included) 403, and the camera gets nothing; the same request from
    this server's page, from public_url's origin, or without browser headers (curl) goes through."""
    async with running_server(FakeDetector(), http={"public_url": "https://cams.example.org"}) as srv, \
            camera(srv) as received:
        url = f"{srv.http}{CONTROL}"
        port = srv.server.http_port
        body = '{"quality": 20, "type": "="}\r\n'  # what a text/plain form with one crafted field sends
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            async with http.post(url, data=body, headers={"Content-Type": ctype}) as resp:
                assert resp.status == 415, ctype
                assert "application/json" in (await resp.json())["detail"]
        async with http.post(url, data=body, skip_auto_headers=["Content-Type"]) as resp:
            assert resp.status == 415, "a body without a Content-Type"
        cross = [{"Origin": "http://evil.example"}, {"Origin": f"http://127.0.0.1:{port + 1}"}, {"Origin": "null"},
                 {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                 {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"}]
        for headers in cross:
            async with http.post(url, json={"quality": 20}, headers=headers) as resp:
                assert resp.status == 403 and (await resp.json())["error"] == "cross-site request", headers
        await asyncio.sleep(0.2)  # a message that slipped through would be on its way by now
        assert not any("quality" in m for m in received)

        same = [{"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
                {"Origin": "https://cams.example.org"}, {}]
        for quality, headers in enumerate(same, start=30):
            async with http.post(url, json={"quality": quality}, headers=headers) as resp:
                assert resp.status == 202, headers
        await wait_for(lambda: {m.get("quality") for m in received} >= {30, 31, 32, 33}, what="the four messages")

        event = record(1, "door", "person", [], time.time())
        srv.server.events.store.save(event, None, time.time())
        async with http.delete(f"{srv.http}/api/events/{event['id']}", headers={"Sec-Fetch-Site": "cross-site"}) as resp:
            assert resp.status == 403
        assert srv.server.events.store.get(event["id"]) is not None
        form = aiohttp.FormData()
        form.add_field("file", make_image(), filename="cam-2.0.0.bin", content_type="application/octet-stream")
        async with http.post(f"{srv.http}/api/firmware", data=form, headers={"Origin": "http://evil.example"}) as resp:
            assert resp.status == 403, "the multipart upload is exempt from the JSON rule only"
        async with http.post(f"{srv.http}/api/notify/test", data="{}", headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 415
        async with http.delete(f"{srv.http}/api/events/{event['id']}") as resp:
            assert resp.status == 200, "a DELETE without a body needs no Content-Type"


async def test_cached_basic_credentials_do_not_make_a_form_post_count(http):
    """With http.users, a text/plain form carrying the user's basic credentials (what a browser re-sends) is
    refused (415), and cross-site (403), while the same user's JSON request goes through; logins and logouts
    from another site are refused too."""
    async with running_server(FakeDetector(), http={"users": {ALICE[0]: ALICE[1]}}) as srv, camera(srv) as received:
        url = f"{srv.http}{CONTROL}"
        async with http.post(url, data='{"quality": 20, "type": "="}\r\n',
                             headers={**basic(ALICE), "Content-Type": "text/plain"}) as resp:
            assert resp.status == 415
        async with http.post(url, json={"quality": 20}, headers={**basic(ALICE), "Origin": "http://evil.example"}) as resp:
            assert resp.status == 403
        assert not any("quality" in m for m in received)
        async with http.post(url, json={"quality": 21}, headers=basic(ALICE)) as resp:
            assert resp.status == 202
        for path in ("/api/login", "/api/logout"):
            async with http.post(f"{srv.http}{path}", json={"user": ALICE[0], "password": ALICE[1]},
                                 headers={"Sec-Fetch-Site": "cross-site"}) as resp:
                assert resp.status == 403, path


async def test_page_logins_work_without_a_storage_folder():
    """ViewerAuth without a storage folder (documented: a new session secret each start) starts and logs a user in;
    it used to fail at start-up, handing None to load_secret."""
    from aiohttp import web

    from camserver.web.session import ViewerAuth

    auth = ViewerAuth("viewer-token-1", {"ann": "ann-password-1"}, None)
    app = web.Application()
    auth.add_routes(app)
    runner = web.AppRunner(app)
    await asyncio.wait_for(runner.setup(), 10)
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        assert await asyncio.wait_for(login(f"http://127.0.0.1:{port}", {"user": "ann", "password": "ann-password-1"}), 10)
    finally:
        await runner.cleanup()
