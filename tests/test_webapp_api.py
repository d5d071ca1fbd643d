"""What the page needs from the server: its files (content types, ETags, installed with the package),
the login (session cookie beside token and basic auth), /api/system, /api/zones, event facets,
the feed position in /api/events, and /healthz's model facts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from camserver.app import CamServer
from camserver.events.rules import Event
from camserver.web.assets import read_assets
from camserver.web.session import COOKIE, LIFETIME_S, SessionSigner
from conftest import FakeDetector, make_config, running_server, tagged_jpeg
from test_events import SseReader

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "viewer-secret-42"


async def test_page_files_have_types_etags_and_revalidate(srv, http):
    """/ and /static/* answer with their content types, no-cache and an ETag; If-None-Match gets 304;
    nothing outside the page's own files is served."""
    async with http.get(f"{srv.http}/") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert resp.headers["Cache-Control"] == "no-cache" and resp.headers["ETag"].startswith('"')
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        html = await resp.text()
        etag = resp.headers["ETag"]
    assert '<script type="module" src="/static/app.js">' in html
    async with http.get(f"{srv.http}/", headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304 and await resp.read() == b""
    for name, ctype in (("app.js", "text/javascript; charset=utf-8"), ("app.css", "text/css; charset=utf-8"),
                        ("icon.svg", "image/svg+xml")):
        async with http.get(f"{srv.http}/static/{name}") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == ctype, name
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/static/nope.js", "/static/../viewer.py", "/static/%2e%2e/viewer.py", "/static/"):
        async with http.get(f"{srv.http}{path}") as resp:
            assert resp.status == 404, path


def test_every_imported_module_is_served():
    """Each module that a page module imports, and each file index.html links, is one of the served files."""
    assets = read_assets()
    wanted = set()
    for name, asset in assets.items():
        if name.endswith(".js"):
            wanted |= set(re.findall(r'from "\./([\w-]+\.js)"', asset.body.decode()))
    wanted |= set(re.findall(r'/static/([\w.-]+)"', assets["index.html"].body.decode()))
    assert wanted and wanted <= set(assets), wanted - set(assets)


def test_wheel_installs_the_page(tmp_path):
    """A built wheel carries every file of the page (package data)."""
    pytest.importorskip("setuptools", reason="building a wheel offline needs setuptools in this environment")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "camserver", src / "camserver", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], check=True, timeout=120, capture_output=True)
    wheel = next((tmp_path / "dist").glob("camserver-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in read_assets():
        assert f"camserver/web/static/{name}" in names, name


async def test_login_sets_a_session_cookie_that_replaces_the_token(http):
    """With http.token: API 401 JSON, the page's files open; a login gives an HttpOnly SameSite=Strict
    cookie that the API accepts; logout revokes it; wrong, non-JSON and cross-site logins are refused."""
    async with running_server(FakeDetector(), http={"token": TOKEN}) as srv:
        base = srv.http
        async with http.get(f"{base}/api/cameras") as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await resp.json())["error"] == "authentication required"
        for path in ("/", "/static/app.js", "/healthz"):
            async with http.get(f"{base}{path}") as resp:
                assert resp.status == 200, path
        for path in ("/static/../api/cameras", "/static/%2e%2e/api/cameras", "/static//api/cameras"):
            async with http.get(f"{base}{path}") as resp:  # the open prefix leads to the page's files only
                assert resp.status in (401, 404), path
        async with http.get(f"{base}/api/session") as resp:
            assert await resp.json() == {"auth_required": True, "methods": ["token"], "authenticated": False,
                                         "via": None, "user": None, "role": None, "can_write": False,
                                         "admin_methods": []}
        async with http.post(f"{base}/api/login", json={"token": "wrong-token-1"}) as resp:
            assert resp.status == 401 and "Set-Cookie" not in resp.headers
        async with http.post(f"{base}/api/login", data=f'{{"token": "{TOKEN}"}}', headers={"Content-Type": "text/plain"}) as resp:
            assert resp.status == 415  # what a cross-site form could send
        async with http.post(f"{base}/api/login", json={"token": TOKEN}, headers={"Origin": "http://evil.example"}) as resp:
            assert resp.status == 403
        # its own cookie jar (unsafe=True: aiohttp keeps no cookies of an IP address otherwise)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.post(f"{base}/api/login", json={"token": TOKEN}) as resp:
                assert resp.status == 200
                cookie = resp.headers["Set-Cookie"]
            assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
            assert "Max-Age" not in cookie and TOKEN not in cookie
            value = browser.cookie_jar.filter_cookies(URL(base))[COOKIE].value
            async with browser.get(f"{base}/api/cameras") as resp:
                assert resp.status == 200
            async with browser.get(f"{base}/api/session") as resp:
                assert (await resp.json())["authenticated"] is True and (await resp.json())["via"] == "session"
            async with browser.post(f"{base}/api/logout") as resp:
                assert resp.status == 200
            async with browser.get(f"{base}/api/cameras") as resp:
                assert resp.status == 401, "the browser dropped the cookie"
        async with http.get(f"{base}/api/cameras", headers={"Cookie": f"{COOKIE}={value}"}) as resp:
            assert resp.status == 401, "the server revoked it too"
        forged = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
        async with http.get(f"{base}/api/cameras", headers={"Cookie": f"{COOKIE}={forged}"}) as resp:
            assert resp.status == 401
        async with http.get(f"{base}/api/cameras", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200, "API clients keep using the token"


async def test_failed_logins_are_throttled(http):
    """After 5 wrong logins within a minute an address gets 429 with Retry-After, even for the right token."""
    async with running_server(FakeDetector(), http={"token": TOKEN}) as srv:
        for _ in range(5):
            async with http.post(f"{srv.http}/api/login", json={"token": "guess-guess"}) as resp:
                assert resp.status == 401
        async with http.post(f"{srv.http}/api/login", json={"token": TOKEN}) as resp:
            assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0


async def test_user_login_and_the_challenge_a_browser_sees(http):
    """With http.users a user logs in with a password; a stream URL opened directly gets the Basic
    challenge (the browser's prompt), the page's own requests the Bearer one (no prompt over the form)."""
    async with running_server(FakeDetector(), http={"users": {"alice": "wonderland-42"}}) as srv:
        async with http.get(f"{srv.http}/api/session") as resp:
            assert (await resp.json())["methods"] == ["password"]
        async with http.get(f"{srv.http}/stream.mjpg") as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")
        async with http.get(f"{srv.http}/stream.mjpg", headers={"Sec-Fetch-Dest": "document"}) as resp:
            assert resp.headers["WWW-Authenticate"].startswith("Basic")
        for dest in ("empty", "image"):
            async with http.get(f"{srv.http}/api/cameras", headers={"Sec-Fetch-Dest": dest}) as resp:
                assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer"), dest
        async with http.post(f"{srv.http}/api/login", json={"user": "alice", "password": "nope"}) as resp:
            assert resp.status == 401
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.post(f"{srv.http}/api/login", json={"user": "alice", "password": "wonderland-42"}) as resp:
                assert (await resp.json())["user"] == "alice"
            async with browser.get(f"{srv.http}/api/session") as resp:
                assert (await resp.json())["user"] == "alice"


async def test_sessions_survive_a_restart_and_end_when_the_token_changes(http, tmp_path):
    """The session key lives in storage.dir: a cookie still works after a restart, not after the token changed."""
    storage = {"dir": str(tmp_path / "data")}
    async with running_server(FakeDetector(), http={"token": TOKEN}, storage=storage) as srv:
        async with http.post(f"{srv.http}/api/login", json={"token": TOKEN}) as resp:
            value = resp.cookies[COOKIE].value
    key_file = tmp_path / "data" / "session.key"
    assert key_file.stat().st_mode & 0o077 == 0, "the secret is readable by its owner only"
    headers = {"Cookie": f"{COOKIE}={value}"}
    async with running_server(FakeDetector(), http={"token": TOKEN}, storage=storage) as srv:
        async with http.get(f"{srv.http}/api/cameras", headers=headers) as resp:
            assert resp.status == 200
    async with running_server(FakeDetector(), http={"token": "another-token-9"}, storage=storage) as srv:
        async with http.get(f"{srv.http}/api/cameras", headers=headers) as resp:
            assert resp.status == 401


def test_session_cookies_expire():
    """A cookie older than LIFETIME_S is refused; one signed under another key is refused."""
    clock = [1_000_000.0]
    signer = SessionSigner(b"s" * 32, TOKEN, {}, clock=lambda: clock[0])
    value = signer.issue("bob")
    assert signer.verify(value).user == "bob"
    assert SessionSigner(b"t" * 32, TOKEN, {}, clock=lambda: clock[0]).verify(value) is None
    clock[0] += LIFETIME_S + 1
    assert signer.verify(value) is None


async def test_system_zones_and_healthz_facts(http):
    """/api/system adds storage use, version, uptime and the API routes; /api/zones lists the configured
    zones; /healthz says the model's file name (no folders) and that a .yaml model has random weights."""
    zone = {"camera": "door", "name": "porch", "points": [[0.5, 0], [1, 0], [1, 1]], "labels": ["person"]}
    async with running_server(FakeDetector(), detect={"model": "models/private/yolo11n.yaml"},
                              events={"zones": [zone]}) as srv:
        async with http.get(f"{srv.http}/healthz") as resp:
            health = await resp.json()
        assert health["model_name"] == "yolo11n.yaml" and health["model_random_weights"] is True
        assert health["version"] and health["uptime_s"] >= 0
        assert health["webhooks"] == {"endpoints": 0, "failures": 0}
        async with http.get(f"{srv.http}/api/system") as resp:
            system = await resp.json()
        assert system["storage"]["used_bytes"] > 0 and system["storage"]["max_bytes"] == 1024 * 1024 * 1024
        assert system["detection"]["backend"] == "fake" and system["events_enabled"] is True
        assert {"/api/events/{}", "/api/cameras/{}/control", "/api/zones"} <= set(system["api"])
        async with http.get(f"{srv.http}/api/zones?camera=door") as resp:
            assert (await resp.json())["zones"] == [zone]
        async with http.get(f"{srv.http}/api/zones?camera=yard") as resp:
            assert (await resp.json())["zones"] == []
    async with running_server(FakeDetector(), detect={"model": "yolo11n.pt"}) as srv:
        async with http.get(f"{srv.http}/healthz") as resp:
            assert (await resp.json())["model_random_weights"] is False


def record(i: int, camera: str, label: str, zones: list[str], start: float) -> dict:
    """A finished event record."""
    return Event(id=f"{int(start * 1000)}-x{i}", camera=camera, label=label, score=0.8, top_score=0.8,
                 box=[1.0, 2.0, 3.0, 4.0], start_time=start, end_time=start + 1, end_reason="disappeared",
                 entered_zones=zones, has_snapshot=False).to_json()


async def test_facets_and_the_feed_position(http):
    """/api/events/facets lists distinct cameras, labels and zones; /api/events gives the feed position,
    and a stream opened there gets later changes only, not the replay of older ones."""
    server = CamServer(make_config(), detector_factory=lambda: FakeDetector())
    async with server:
        base = f"http://127.0.0.1:{server.http_port}"
        now = time.time()
        for i, (camera, label, zones) in enumerate((("door", "person", ["porch"]), ("yard", "car", ["drive", "porch"]),
                                                    ("door", "dog", []))):
            server.events.store.save(record(i, camera, label, zones, now - i), None, now)
            server.events.feed.publish("new", {"type": "new", "before": None, "after": record(i, camera, label, zones, now - i)})
        async with http.get(f"{base}/api/events/facets") as resp:
            assert await resp.json() == {"cameras": ["door", "yard"], "labels": ["car", "dog", "person"],
                                         "zones": ["drive", "porch"]}
        async with http.get(f"{base}/api/events?limit=1") as resp:
            position = (await resp.json())["last_event_id"]
        later = record(9, "door", "person", [], now + 5)
        server.events.feed.publish("new", {"type": "new", "before": None, "after": later})
        async with http.get(f"{base}/api/events/stream?last_event_id={position}") as resp:
            first = await SseReader(resp).next()
        assert first[2]["after"]["id"] == later["id"], "only what came after the list"
        async with http.get(f"{base}/api/events/stream") as resp:
            replayed = await SseReader(resp).next()
        assert replayed[2]["after"]["id"] != later["id"], "without a position the history replays, as documented"


async def test_delete_needs_a_credential_and_cookie_works_for_writes(http):
    """A page session may delete (today's rule: viewers may write); without any credential it is 401."""
    config = make_config(http={"token": TOKEN})
    server = CamServer(config, detector_factory=lambda: FakeDetector())
    async with server:
        base = f"http://127.0.0.1:{server.http_port}"
        event = record(1, "door", "person", [], time.time())
        server.events.store.save(event, tagged_jpeg(0, 1), time.time())
        async with http.delete(f"{base}/api/events/{event['id']}") as resp:
            assert resp.status == 401
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.post(f"{base}/api/login", json={"token": TOKEN}) as resp:
                assert resp.status == 200
            async with browser.delete(f"{base}/api/events/{event['id']}", headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 200
        assert server.events.store.get(event["id"]) is None
