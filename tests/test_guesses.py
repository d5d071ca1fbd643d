"""Credentials over time: one limiter for every wrong credential on every route, locks that a flood
from other addresses cannot lift, Secure cookies over https, sessions that outlive clock steps,
logouts that outlive a restart, and cookies that are not UTF-8."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from camserver.web.cookies import LIFETIME_S, SessionSigner, SteadyClock
from camserver.web.limiter import GuessLimiter
from camserver.web.session import COOKIE, MAX_FAILURES, MAX_TRACKED
from conftest import FakeDetector, running_server

USER, PASSWORD = "alice", "wonderland-42"
TOKEN = "viewer-secret-42"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def raw_request(host: str, port: int, request: bytes, local: str | None = None, timeout: float = 10) -> bytes:
    """Send one raw HTTP request (from the source address `local`) and read the whole answer."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, local_addr=(local, 0) if local else None), timeout)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_wrong_basic_auth_and_tokens_on_any_route_lock_the_address_like_wrong_logins(http):
    """60 wrong basic-auth guesses on the page's API and on a public route: 401 (or an unauthenticated
    answer) for the first MAX_FAILURES, then 429 with Retry-After; the right password, the right token
    and a right login get 429 during the lock; bearer and ?token= guesses count the same."""
    async with running_server(FakeDetector(), http={"users": {USER: PASSWORD}, "token": TOKEN}) as srv:
        statuses = []
        for i in range(60):
            path = ("/api/cameras", "/api/session", "/snapshot.jpg")[i % 3]
            async with http.get(f"{srv.http}{path}", headers=basic(USER, f"guess-{i:03d}")) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert 0 < int(resp.headers["Retry-After"]) <= 60
                    assert (await resp.json())["error"] == "too many wrong credentials"
        assert all(s != 429 for s in statuses[:MAX_FAILURES]), statuses
        assert statuses[MAX_FAILURES:] == [429] * (60 - MAX_FAILURES), statuses
        async with http.get(f"{srv.http}/api/cameras", headers=basic(USER, PASSWORD)) as resp:
            assert resp.status == 429, "the right password during the lock"
        async with http.get(f"{srv.http}/api/cameras", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 429, "the right token during the lock"
        async with http.post(f"{srv.http}/api/login", json={"user": USER, "password": PASSWORD}) as resp:
            assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0, "a right login during the lock"
        async with http.get(f"{srv.http}/healthz") as resp:
            assert resp.status == 200, "a request without a credential is no guess"
            guesses = (await resp.json())["credential_guesses"]
        assert guesses["failures"] == MAX_FAILURES and guesses["locked"] == 1 and guesses["refused"] >= 55

    # tokens: the same count, whether in the header or the URL
    async with running_server(FakeDetector(), http={"token": TOKEN}) as srv:
        for i in range(MAX_FAILURES):
            url = f"{srv.http}/api/cameras" + (f"?token=guess-{i}" if i % 2 else "")
            headers = {} if i % 2 else {"Authorization": f"Bearer guess-{i}"}
            async with http.get(url, headers=headers) as resp:
                assert resp.status == 401
        async with http.get(f"{srv.http}/api/cameras?token={TOKEN}") as resp:
            assert resp.status == 429


async def test_a_lock_outlives_failures_from_5000_other_addresses(http):
    """An address locked by wrong logins stays locked while 5,000 other addresses on 127.0.0.0/8 each
    fail a login (more than the table holds): its right login still gets 429; the table stays bounded."""
    async with running_server(FakeDetector(), http={"users": {USER: PASSWORD}}) as srv:
        port = srv.server.http_port
        for i in range(MAX_FAILURES):
            async with http.post(f"{srv.http}/api/login", json={"user": USER, "password": f"nope-{i}"}) as resp:
                assert resp.status == 401
        wrong = b'{"user": "alice", "password": "flood"}'
        request = (b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(wrong), wrong))
        gate = asyncio.Semaphore(64)
        statuses: dict[int, int] = {}

        async def guess(n: int) -> None:
            local = f"127.1.{n // 250}.{n % 250 + 1}"
            async with gate:
                answer = await raw_request("127.0.0.1", port, request, local, timeout=60)
            statuses[status_of(answer)] = statuses.get(status_of(answer), 0) + 1

        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(guess(n) for n in range(5000))), 300)
        flood_s = time.monotonic() - started
        assert statuses == {401: 5000}, statuses
        async with http.post(f"{srv.http}/api/login", json={"user": USER, "password": PASSWORD}) as resp:
            assert resp.status == 429, f"the lock was lifted by the flood ({flood_s:.1f} s)"
        async with http.get(f"{srv.http}/api/cameras", headers=basic(USER, PASSWORD)) as resp:
            assert resp.status == 429
        assert len(srv.server.viewer_app.auth.limiter) <= MAX_TRACKED, "the table is bounded"


def test_the_limiter_never_evicts_a_lock_and_overflows_into_one_shared_entry():
    """With a table of 8: unlocked entries are evicted first (oldest first), a lock never; when every
    entry is locked, new addresses share the overflow entry, which locks too; locks end on time."""
    now = [100.0]
    limiter = GuessLimiter(max_failures=3, window_s=60.0, max_tracked=8, clock=lambda: now[0])
    for _ in range(3):
        limiter.failed("victim")
    assert limiter.locked_for("victim") == pytest.approx(60.0)
    for n in range(10_000):
        limiter.failed(f"10.0.{n // 256}.{n % 256}")
        assert len(limiter) <= 9
    assert limiter.locked_for("victim") == pytest.approx(60.0), "10,000 single failures do not lift it"
    for n in range(7):  # lock seven more: the table is full of locks
        for _ in range(3):
            limiter.failed(f"attacker-{n}")
    assert all(limiter.locked_for(f"attacker-{n}") > 0 for n in range(7)) and limiter.locked_for("victim") > 0
    for n in range(3):  # newcomers share the overflow entry, which locks like one address
        limiter.failed(f"newcomer-{n}")
    assert limiter.locked_for("newcomer-99") > 0 and limiter.overflowed == 3
    now[0] += 61
    assert limiter.locked_for("victim") == 0 and limiter.locked_for("newcomer-99") == 0


async def test_session_cookie_is_secure_when_the_page_is_reached_over_https(http):
    """With http.public_url https://..., the login's cookie carries Secure; without it, it does not."""
    for public_url, secure in (("https://cams.example", True), ("", False)):
        async with running_server(FakeDetector(), http={"token": TOKEN, "public_url": public_url}) as srv:
            async with http.post(f"{srv.http}/api/login", json={"token": TOKEN}) as resp:
                assert resp.status == 200
                cookie = resp.headers["Set-Cookie"]
            assert ("Secure" in cookie) is secure, cookie


def test_sessions_survive_wall_clock_steps_and_still_end_after_their_lifetime():
    """A cookie stays valid when the wall clock steps back 1 h or forward 1 day (monotonic time untouched),
    also across a restart after the step back, and ends LIFETIME_S after its issue all the same."""
    wall, mono = [1_800_000_000.0], [5_000.0]
    clock = SteadyClock(lambda: wall[0], lambda: mono[0])
    signer = SessionSigner(b"s" * 32, TOKEN, {}, clock=clock)
    value = signer.issue("bob")
    mono[0] += 60
    wall[0] -= 3600  # NTP steps the clock back an hour
    assert signer.verify(value) is not None, "a step back"
    mono[0] += 60
    wall[0] += 86400 + 3600  # and then forward a day
    assert signer.verify(value) is not None, "a step forward"
    wall[0] -= 86400 + 3600  # a restart with the clock an hour behind where the cookie was issued
    restarted = SessionSigner(b"s" * 32, TOKEN, {}, clock=SteadyClock(lambda: wall[0], lambda: mono[0]))
    assert restarted.verify(value) is not None, "a cookie 'from the future' after a restart"
    mono[0] += LIFETIME_S + 120
    assert signer.verify(value) is None, "its lifetime still ends on the monotonic clock"


async def test_a_logout_outlives_a_restart(http, tmp_path):
    """A cookie logged out stays refused after the server restarts; another session of the same user stays valid."""
    storage = {"dir": str(tmp_path / "data")}
    tables = {"http": {"users": {USER: PASSWORD}}, "storage": storage}
    async with running_server(FakeDetector(), **tables) as srv:
        cookies = []
        for _ in range(2):
            async with http.post(f"{srv.http}/api/login", json={"user": USER, "password": PASSWORD}) as resp:
                cookies.append(resp.cookies[COOKIE].value)
        async with http.post(f"{srv.http}/api/logout", headers={"Cookie": f"{COOKIE}={cookies[0]}"}) as resp:
            assert resp.status == 200
    async with running_server(FakeDetector(), **tables) as srv:
        async with http.get(f"{srv.http}/api/cameras", headers={"Cookie": f"{COOKIE}={cookies[0]}"}) as resp:
            assert resp.status == 401, "the logged-out cookie works again after a restart"
        async with http.get(f"{srv.http}/api/cameras", headers={"Cookie": f"{COOKIE}={cookies[1]}"}) as resp:
            assert resp.status == 200


@pytest.mark.parametrize("path", ["/api/cameras", "/api/session", "/snapshot.jpg", "/api/events", "/api/system",
                                  "/api/cameras/cam/settings", "/api/firmware", "/metrics"])
async def test_a_session_cookie_that_is_not_utf8_is_no_credential(caplog, path):
    """A Cookie header with bytes that are not UTF-8 gets the unauthenticated answer (401 JSON, or the
    public route's own), never a 500 with a traceback."""
    async with running_server(FakeDetector(), http={"token": TOKEN}) as srv:
        request = (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   b"Cookie: " + COOKIE.encode() + b"=1700000000.\xff\xfe.YQ.viewer.\xc3\x28mac\r\n\r\n")
        answer = await raw_request("127.0.0.1", srv.server.http_port, request)
    assert status_of(answer) in (200, 401), answer[:200]
    assert b"application/json" in answer.split(b"\r\n\r\n")[0]
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]
