"""Webhooks against a real aiohttp receiver: new and end arrive; a 500 is retried; a hanging receiver slows nothing."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from camserver.app import CamServer
from conftest import ScriptedDetector, connect_camera, make_config, tagged_jpeg, wait_for
from hooks import receiver


def walking(cam, seq):
    return [("person", 0.9, (10.0 + 10 * seq, 60.0, 50.0 + 10 * seq, 200.0))] if 1 <= seq <= 15 else []


async def walk(server, frames: int = 30) -> None:
    cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
    for seq in range(1, frames + 1):
        await cam.send(tagged_jpeg(0, seq))
        await asyncio.sleep(0.05)
    await cam.close()


async def test_receiver_gets_new_and_end():
    """A webhook with the default types gets exactly new and end, with the event record and its header."""
    got = []

    async def hook(request):
        got.append((request.headers.get("Authorization"), await request.json()))
        return web.json_response({"ok": True})

    async with receiver(hook) as url:
        config = make_config(events={"max_disappeared_s": 0.3},
                             webhooks=[{"url": url, "headers": {"Authorization": "Bearer hook-secret"}}])
        async with CamServer(config, detector_factory=lambda: ScriptedDetector(walking)) as server:
            await walk(server)
            await wait_for(lambda: len(got) == 2, what="new and end delivered")
    assert [m["type"] for _, m in got] == ["new", "end"]
    assert {auth for auth, _ in got} == {"Bearer hook-secret"}
    assert got[0][1]["after"]["id"] == got[1][1]["after"]["id"] and got[1][1]["after"]["end_reason"] == "disappeared"


async def test_500_then_200_delivers_once_after_a_retry():
    """A receiver that fails once with 500 gets the event once, on the retry; nothing counts as failed."""
    calls = []

    async def hook(request):
        calls.append(await request.json())
        return web.Response(status=500 if len(calls) == 1 else 200)

    async with receiver(hook) as url:
        config = make_config(events={"max_disappeared_s": 30}, webhooks=[{"url": url, "types": ["new"]}])
        async with CamServer(config, detector_factory=lambda: ScriptedDetector(walking)) as server:
            await walk(server, 10)
            await wait_for(lambda: len(calls) == 2, what="the retry")
            assert server.webhooks.failures == 0 and server.webhooks.hooks[0].delivered == 1
    assert calls[0] == calls[1] and calls[0]["type"] == "new"


async def test_hanging_receiver_slows_nothing():
    """A receiver that never answers: frames flow at full rate and events go on; the delivery times out and counts."""
    release = asyncio.Event()

    async def hook(request):
        await release.wait()
        return web.Response()

    async with receiver(hook) as url:
        config = make_config(events={"max_disappeared_s": 0.3}, webhooks=[{"url": url}])
        async with CamServer(config, detector_factory=lambda: ScriptedDetector(walking)) as server:
            hook0 = server.webhooks.hooks[0]
            hook0.retry_delays_s = (0.1,)
            started = time.monotonic()
            await walk(server, 40)
            elapsed = time.monotonic() - started
            camera = server.hub.get("door")
            assert camera.frames_processed + camera.frames_dropped == 40
            assert elapsed < 40 * 0.05 + 1.5  # the camera was never held up
            await wait_for(lambda: server.events.events_total == 1 and server.events.idle, what="event recorded")
            await wait_for(lambda: server.webhooks.failures >= 1, timeout=15, what="delivery given up")
            release.set()


def test_credentials_in_the_url_and_an_authorization_header_are_refused_at_load():
    """user:password in the URL plus an Authorization header cannot both go out: one ConfigError at load."""
    import pytest

    from camserver.config import ConfigError

    with pytest.raises(ConfigError) as info:
        make_config(webhooks=[{"url": "http://user:pw@127.0.0.1:9/hook", "headers": {"Authorization": "Bearer x"}}])
    assert info.value.key == "webhooks[0].headers" and "pw" not in str(info.value)


async def test_any_delivery_error_is_counted_and_logged_without_the_secret(caplog):
    """An unexpected error inside a delivery (not a network error) is caught per delivery, counted, logged redacted."""
    import logging

    async def hook(request):
        return web.json_response({"ok": True})

    async with receiver(hook) as url:
        url = url.replace("http://", "http://user:hook-password@")
        config = make_config(events={"max_disappeared_s": 0.3}, webhooks=[{"url": url}])
        async with CamServer(config, detector_factory=lambda: ScriptedDetector(walking)) as server:
            sender = server.webhooks
            sender.hooks[0].retry_delays_s = ()
            real_post = sender._session.post
            calls = []

            def broken_post(*args, **kwargs):
                calls.append(1)
                if len(calls) == 1:
                    raise ValueError("a bug somewhere in the request")
                return real_post(*args, **kwargs)

            sender._session.post = broken_post
            with caplog.at_level(logging.WARNING, logger="camserver.integrations.webhooks"):
                await walk(server)
                await wait_for(lambda: len(calls) == 2 and sender.hooks[0].delivered == 1, what="the second one delivered")
    assert sender.failures == 1
    lines = [r.getMessage() for r in caplog.records]
    assert any("a bug somewhere" in line for line in lines) and not any("hook-password" in line for line in lines)


async def test_redirects_are_not_followed_to_another_host():
    """A 307 to another origin is not followed (the event and its headers never reach it); same origin only when asked."""
    elsewhere = []

    async def other(request):
        elsewhere.append(request.headers.get("X-Token"))
        return web.Response()

    async with receiver(other) as other_url:
        async def redirect(request):
            raise web.HTTPTemporaryRedirect(other_url)

        async with receiver(redirect) as url:
            config = make_config(events={"max_disappeared_s": 0.3},
                                 webhooks=[{"url": url, "types": ["new"], "headers": {"X-Token": "t0ken"},
                                            "follow_redirects": True}])
            async with CamServer(config, detector_factory=lambda: ScriptedDetector(walking)) as server:
                await walk(server, 10)
                await wait_for(lambda: server.webhooks.failures == 1, what="the redirect refused")
    assert elsewhere == []


async def test_a_failing_stop_step_does_not_skip_the_others(monkeypatch):
    """If stopping the webhooks raises, MQTT and the rest still stop (the broker would keep the server 'online')."""
    stopped = []
    server = CamServer(make_config(), detector_factory=None)

    async def broken() -> None:
        raise RuntimeError("webhook stop failed")

    async def mqtt_stop() -> None:
        stopped.append("mqtt")

    # before the start: a stage's stop is taken as it starts
    monkeypatch.setattr(server.webhooks, "stop", broken)
    monkeypatch.setattr(server.mqtt, "stop", mqtt_stop)
    async with server:
        pass
    assert stopped == ["mqtt"] and not server.database.is_open
