"""http.users with hashed passwords, through a real server and aiohttp client: a hashed user logs in (basic
auth and /api/login), a wrong password is 401, plain text warns once at start; the page's PATCH of users
and tokens writes hashes (never a plain password), applies live, and never removes the last admin;
20 concurrent wrong guesses do not stall the event loop; the CLI's hash checks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import aiohttp
import pytest

from camserver.app import CamServer
from camserver.config import ConfigError
from conftest import FakeDetector, make_config
from camserver.config.writeback import HIDDEN, ConfigFile
from camserver.passwords import hash_password, is_hashed, verify
from camserver.web.cookies import SECRET_FILE

ROOT = Path(__file__).resolve().parent.parent
MERGE = "application/merge-patch+json"
ADMIN_PW = "root-pass-1234"
BOB_PW = "bob-pass-5678"
ADMIN_HASH = hash_password(ADMIN_PW)
BOB_HASH = hash_password(BOB_PW)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def users_file(tmp_path: Path, users: str) -> ConfigFile:
    path = tmp_path / "config.toml"
    path.write_text(f"# the test's config\n[http]\n# who may log in\nusers = {users}\n")
    overrides = {"ingest": {"host": "127.0.0.1", "port": 0}, "storage": {"dir": str(tmp_path / "data")},
                 "http": {"host": "127.0.0.1", "port": 0, "mdns": False}, "motion": {"enabled": False}}
    return ConfigFile(path, overrides)


HASHED = f'{{ root = {{ password = "{ADMIN_HASH}", role = "admin" }}, bob = "{BOB_HASH}" }}'


@contextlib.asynccontextmanager
async def served(file: ConfigFile):
    config = file.effective(tomllib.loads(file.path.read_text()))
    async with CamServer(config, detector_factory=FakeDetector, config_file=file) as server:
        yield server, f"http://127.0.0.1:{server.http_port}"


async def read_config(http: aiohttp.ClientSession, base: str) -> dict:
    async with http.get(f"{base}/api/config", headers=basic("root", ADMIN_PW)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def patch(http: aiohttp.ClientSession, base: str, body: dict, who: tuple[str, str] = ("root", ADMIN_PW)
                ) -> tuple[int, str]:
    version = (await read_config(http, base))["version"]
    async with http.patch(f"{base}/api/config", json=body,
                          headers={**basic(*who), "Content-Type": MERGE, "If-Match": version}) as resp:
        return resp.status, await resp.text()


async def session_of(http: aiohttp.ClientSession, base: str, headers: dict[str, str]) -> tuple[int, dict | None]:
    async with http.get(f"{base}/api/cameras", headers=headers) as resp:
        status = resp.status
    async with http.get(f"{base}/api/session", headers=headers) as resp:
        return status, await resp.json()


async def test_a_hashed_user_logs_in_by_basic_auth_and_the_login_form(tmp_path, http):
    """Stored hashed: the right password opens the API (basic) and the page (/api/login sets the cookie);
    a wrong one, or an unknown user, gets 401."""
    async with served(users_file(tmp_path, HASHED)) as (_, base):
        status, who = await session_of(http, base, basic("bob", BOB_PW))
        assert status == 200 and who["user"] == "bob" and who["role"] == "viewer"
        status, who = await session_of(http, base, basic("root", ADMIN_PW))
        assert status == 200 and who["role"] == "admin" and who["can_write"]
        async with http.get(f"{base}/api/cameras", headers=basic("bob", "wrong")) as resp:
            assert resp.status == 401
        async with http.get(f"{base}/api/cameras", headers=basic("nobody", BOB_PW)) as resp:
            assert resp.status == 401
        jar = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with jar:
            async with jar.post(f"{base}/api/login", json={"user": "bob", "password": "nope"}) as resp:
                assert resp.status == 401
            async with jar.post(f"{base}/api/login", json={"user": "bob", "password": BOB_PW}) as resp:
                assert resp.status == 200 and (await resp.json())["user"] == "bob"
            async with jar.get(f"{base}/api/cameras") as resp:
                assert resp.status == 200


async def test_plain_text_passwords_warn_once_naming_their_users(tmp_path, http, caplog):
    """alice in plain text still logs in; the start logs one warning that names her and not the hashed bob."""
    caplog.set_level(logging.WARNING)
    file = users_file(tmp_path, f'{{ alice = "alice-plain-pw", bob = "{BOB_HASH}" }}')
    async with served(file) as (_, base):
        status, who = await session_of(http, base, basic("alice", "alice-plain-pw"))
        assert status == 200 and who["user"] == "alice"
        for _ in range(3):
            await session_of(http, base, basic("alice", "alice-plain-pw"))
    warned = [r.getMessage() for r in caplog.records if "plain text" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "alice" in warned[0] and "bob" not in warned[0]


async def test_patch_adds_a_user_as_a_hash_changes_password_and_role_live(tmp_path, http):
    """From the page: a new user's password lands in config.toml as a hash (never plain, never the
    redaction marker), the comments stay, and the user logs in at once; a role change keeps the password;
    a changed password ends the old one's use; GET lists users with role and whether hashed."""
    file = users_file(tmp_path, f'{{ root = {{ password = "{ADMIN_HASH}", role = "admin" }}, bob = "bob-plain-pw" }}')
    async with served(file) as (_, base):
        status, text = await patch(http, base, {"http": {"users": {"carol": {"password": "carol-pass-42"}}}})
        assert status == 200, text
        written = file.path.read_text()
        assert "carol-pass-42" not in written and HIDDEN not in written
        assert "# who may log in" in written and "# the test's config" in written
        stored = tomllib.loads(written)["http"]["users"]["carol"]["password"]
        assert is_hashed(stored) and verify(stored, "carol-pass-42")
        status, who = await session_of(http, base, basic("carol", "carol-pass-42"))
        assert status == 200 and who["user"] == "carol", "the new user logs in without a restart"

        # bob (plain text, the short form) made an admin: the password is kept, as it was
        status, text = await patch(http, base, {"http": {"users": {"bob": {"password": HIDDEN, "role": "admin"}}}})
        assert status == 200, text
        assert tomllib.loads(file.path.read_text())["http"]["users"]["bob"] == {"password": "bob-plain-pw",
                                                                                "role": "admin"}
        status, who = await session_of(http, base, basic("bob", "bob-plain-pw"))
        assert status == 200 and who["role"] == "admin"

        status, text = await patch(http, base, {"http": {"users": {"carol": {"password": "carol-new-77"}}}})
        assert status == 200, text
        assert (await session_of(http, base, basic("carol", "carol-pass-42")))[0] == 401
        assert (await session_of(http, base, basic("carol", "carol-new-77")))[0] == 200
        listed = {u["name"]: u for u in (await read_config(http, base))["users"]}
        assert listed["carol"] == {"name": "carol", "role": "viewer", "hashed": True}
        assert listed["bob"]["hashed"] is False and listed["bob"]["role"] == "admin"


async def test_the_last_admin_is_neither_removed_nor_demoted(tmp_path, http):
    """400 with a clear message, the file untouched, the admin still an admin; a viewer user gets 403."""
    file = users_file(tmp_path, HASHED)
    async with served(file) as (_, base):
        before = file.path.read_bytes()
        for body in ({"http": {"users": {"root": None}}},
                     {"http": {"users": {"root": {"password": HIDDEN, "role": "viewer"}}}}):
            status, text = await patch(http, base, body)
            assert status == 400 and "last admin" in text, text
        assert file.path.read_bytes() == before
        status, text = await patch(http, base, {"http": {"users": {"bob": None}}}, who=("bob", BOB_PW))
        assert status == 403, text
        async with http.get(f"{base}/api/config", headers=basic("bob", BOB_PW)) as resp:
            assert resp.status == 403
        assert file.path.read_bytes() == before
        # with a second admin, the first may go
        status, text = await patch(http, base, {"http": {"users": {"bob": {"password": HIDDEN, "role": "admin"}}}})
        assert status == 200, text
        status, text = await patch(http, base, {"http": {"users": {"root": None}}}, who=("bob", BOB_PW))
        assert status == 200, text
        assert (await session_of(http, base, basic("root", ADMIN_PW)))[0] == 401


async def test_tokens_generated_and_revoked_from_the_page_apply_live(tmp_path, http):
    """A new viewer token works at once and is never shown back (GET says only that it is set); revoked, it
    gets 401."""
    file = users_file(tmp_path, HASHED)
    token = "fresh-viewer-token-0123456789"
    async with served(file) as (_, base):
        status, text = await patch(http, base, {"http": {"token": token}})
        assert status == 200, text
        assert "http.token" in text and "applied_live" in text
        bearer = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{base}/api/cameras", headers=bearer) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/api/config", headers=basic("root", ADMIN_PW)) as resp:
            body = await resp.text()
        assert token not in body
        assert (await read_config(http, base))["tokens"] == {"token": True, "admin_token": False}
        status, text = await patch(http, base, {"http": {"token": ""}})
        assert status == 200, text
        async with http.get(f"{base}/api/cameras", headers=bearer) as resp:
            assert resp.status == 401


async def test_twenty_concurrent_wrong_guesses_do_not_stall_the_loop(tmp_path, http):
    """20 wrong basic-auth passwords at once (each a ~30 ms hash): the loop never lags 100 ms, the guesses get
    401 or 429 (the limiter in front: 5 failures lock the address)."""
    async with served(users_file(tmp_path, HASHED)) as (server, base):
        assert (await session_of(http, base, basic("bob", BOB_PW)))[0] == 200
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                await asyncio.sleep(0.005)
                lags.append(time.perf_counter() - t0 - 0.005)

        tick = asyncio.create_task(ticker())
        t0 = time.perf_counter()

        async def guess(i: int) -> int:
            async with http.get(f"{base}/api/cameras", headers=basic("root", f"guess-{i}")) as resp:
                return resp.status

        statuses = await asyncio.wait_for(asyncio.gather(*(guess(i) for i in range(20))), 60)
        took = time.perf_counter() - t0
        stop.set()
        await tick
        assert set(statuses) <= {401, 429} and statuses.count(401) >= 5, statuses
        assert max(lags) < 0.1, f"the loop lagged {max(lags) * 1000:.0f} ms"
        print(f"20 wrong guesses in {took * 1000:.0f} ms, loop lag max {max(lags) * 1000:.1f} ms, "
              f"{server.viewer_app.auth.limiter.failures} failures counted")


async def test_basic_auth_on_every_request_does_not_hash_each_time(tmp_path, http):
    """50 requests with the same right basic credential: one hash, 49 hits of the in-memory cache."""
    async with served(users_file(tmp_path, HASHED)) as (server, base):
        cache = server.viewer_app.auth.verified
        t0 = time.perf_counter()
        for _ in range(50):
            async with http.get(f"{base}/api/cameras", headers=basic("bob", BOB_PW)) as resp:
                assert resp.status == 200
        took = time.perf_counter() - t0
        assert cache.hits >= 49 and cache.misses <= 1, (cache.hits, cache.misses)
        print(f"50 basic-auth requests in {took * 1000:.0f} ms ({took * 20:.1f} ms each)")


def test_the_cli_hashes_a_password_from_stdin_and_the_hash_checks():
    """`python -m camserver --hash-password` with the password on stdin prints one line that verifies, and
    that a server accepts as a user's password."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "camserver", "--hash-password"], input="pässwörd 1\n",
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("pbkdf2_sha256$100000$") and "\n" not in line
    assert verify(line, "pässwörd 1") and not verify(line, "pässwörd 2")
    config = make_config(http={"users": {"eve": line}})
    assert config.http.passwords["eve"] == line
    empty = subprocess.run([sys.executable, "-m", "camserver", "--hash-password"], input="\n",
                           capture_output=True, text=True, timeout=120, env=env, check=False)
    assert empty.returncode != 0 and "empty" in empty.stderr


def test_a_broken_hash_is_a_config_error_that_says_how_to_make_one():
    with pytest.raises(ConfigError) as caught:
        make_config(http={"users": {"eve": "pbkdf2_sha256$12$salt$notbase64!"}})
    assert "--hash-password" in str(caught.value) and "http.users.eve" in str(caught.value)


def test_a_check_costs_a_few_ms_to_50_ms():
    """The hash's cost on this machine (the best of three, as load may slow any one)."""
    stored = hash_password("x")
    best = min(_timed(verify, stored, "x") for _ in range(3))
    print(f"one check: {best * 1000:.1f} ms")
    assert 0.002 < best < 0.2


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


async def test_the_writer_keeps_its_page_session_and_other_sessions_end(tmp_path):
    """An admin logged in by the page adds a user: its cookie is issued again (it stays logged in), while the
    session of another user ends (the sessions' key covers every credential)."""
    async with served(users_file(tmp_path, HASHED)) as (_, base):
        admin = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        other = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with admin, other:
            for jar, user, password in ((admin, "root", ADMIN_PW), (other, "bob", BOB_PW)):
                async with jar.post(f"{base}/api/login", json={"user": user, "password": password}) as resp:
                    assert resp.status == 200
            async with admin.get(f"{base}/api/config") as resp:
                version = (await resp.json())["version"]
            async with admin.patch(f"{base}/api/config", json={"http": {"users": {"dave": "dave-pass-99"}}},
                                   headers={"Content-Type": MERGE, "If-Match": version}) as resp:
                assert resp.status == 200, await resp.text()
            async with admin.get(f"{base}/api/config") as resp:
                assert resp.status == 200, "the admin who made the change is still logged in"
            async with other.get(f"{base}/api/cameras") as resp:
                assert resp.status == 401, "another session ends with the change"


async def test_a_server_started_open_takes_its_first_admin_from_the_page(tmp_path, http):
    """No users, no tokens: the first user, an admin, added by PATCH applies at once; then the open
    server needs a login, and the admin's login works."""
    file = users_file(tmp_path, "{}")
    async with served(file) as (_, base):
        async with http.get(f"{base}/api/config") as resp:
            version = (await resp.json())["version"]
        async with http.patch(f"{base}/api/config", json={"http": {"users": {"root": {"password": ADMIN_PW,
                                                                                       "role": "admin"}}}},
                              headers={"Content-Type": MERGE, "If-Match": version}) as resp:
            assert resp.status == 200, await resp.text()
        async with http.get(f"{base}/api/cameras") as resp:
            assert resp.status == 401
        jar = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with jar:
            async with jar.post(f"{base}/api/login", json={"user": "root", "password": ADMIN_PW}) as resp:
                assert resp.status == 200 and (await resp.json())["can_write"]
            async with jar.get(f"{base}/api/config") as resp:
                assert resp.status == 200
    assert (tmp_path / "data" / SECRET_FILE).exists(), "the session secret is kept, so sessions survive a restart"
