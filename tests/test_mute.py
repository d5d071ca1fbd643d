"""Mute: notifications held for a camera or all, events still recorded, shown in /api/cameras, kept across a
restart, ended on the monotonic clock; the API's bad input; Home Assistant's switch through mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from camserver.app import CamServer
from camserver.integrations.mute import ALL, MuteBoard
from camserver.storage import Database
from conftest import WAIT_S, ScriptedDetector, connect_camera, make_config, tagged_jpeg, wait_for
from fake_ntfy import fake_ntfy
from hooks import receiver


def walking(cam: int, seq: int):
    """A person over frames 1-8 of each block of 40: every block is one event."""
    return [("person", 0.9, (10.0 + 12 * (seq % 40), 60.0, 50.0 + 12 * (seq % 40), 200.0))] if 1 <= seq % 40 <= 8 else []


@contextlib.asynccontextmanager
async def mute_server(storage: Path, ntfy_url: str = "", **tables):
    notify = [{"urls": [f"ntfy://{ntfy_url}/door-alerts"], "cooldown_s": 0}] if ntfy_url else []
    config = make_config(events={"max_disappeared_s": 0.3}, storage={"dir": str(storage)},
                         cameras={"ids": ["door", "yard"]}, notify=notify, **tables)
    async with CamServer(config, detector_factory=lambda: ScriptedDetector(walking)) as server:
        yield server, f"http://127.0.0.1:{server.http_port}"


async def crossing(server: CamServer, cam, block: int) -> str:
    """One person crossing (frames of block `block`), until its event ended; its id."""
    ended: list[str] = []
    listener = lambda change: change.type == "end" and ended.append(change.after["id"])  # noqa: E731
    server.events.listeners.append(listener)
    try:
        for seq in range(40 * block + 1, 40 * block + 20):
            await cam.send(tagged_jpeg(0, seq))
            await asyncio.sleep(0.05)
        await wait_for(lambda: bool(ended), timeout=WAIT_S * 2, what="the crossing's event ended")
    finally:
        server.events.listeners.remove(listener)
    return ended[0]


async def cameras(http: aiohttp.ClientSession, base: str) -> dict[str, dict]:
    async with http.get(f"{base}/api/cameras") as resp:
        assert resp.status == 200
        return {c["id"]: c for c in await resp.json()}


async def test_a_muted_camera_records_its_events_but_sends_no_notification(tmp_path, http):
    """Muted for 30 min through the API: /api/cameras says so with its end, an event is recorded and sent
    nowhere (healthz counts it held); unmuted, the next event notifies at once."""
    async with fake_ntfy() as fake, mute_server(tmp_path / "data", fake.url) as (server, base):
        async with http.post(f"{base}/api/cameras/door/mute", json={"for_s": 1800}) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        assert body["muted"] and body["muted_by"] == "camera"
        assert abs(body["muted_until"] - (time.time() + 1800)) < 5
        listed = await cameras(http, base)
        assert listed["door"]["muted"] and abs(listed["door"]["muted_until"] - body["muted_until"]) < 5
        assert not listed["yard"]["muted"] and listed["yard"]["muted_until"] is None

        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        held_id = await crossing(server, cam, 0)
        async with http.get(f"{base}/api/events?camera=door") as resp:
            assert [e["id"] for e in (await resp.json())["events"]] == [held_id], "the event is still recorded"
        async with http.get(f"{base}/healthz") as resp:
            assert (await resp.json())["notify_held"] == 1
        await asyncio.sleep(1.0)  # a message wrongly sent for the held event would have arrived by now
        assert fake.received == []

        async with http.delete(f"{base}/api/cameras/door/mute") as resp:
            assert resp.status == 200 and not (await resp.json())["muted"]
        await crossing(server, cam, 1)
        await fake.wait(lambda: len(fake.received) == 1, what="the notification after unmuting")
        assert fake.received[0].title == "Person at door"
        await cam.close()


async def test_mute_all_holds_every_camera_until_turned_back_on_and_survives_a_restart(tmp_path, http):
    """POST /api/mute with for_s null mutes every camera; one camera's 1 h mute and the mute of all are both
    there after a restart, with the same end; DELETE /api/mute turns every mute off."""
    data = tmp_path / "data"
    async with mute_server(data) as (server, base):
        async with http.post(f"{base}/api/mute", json={"for_s": None}) as resp:
            assert resp.status == 200 and (await resp.json())["muted"]
        async with http.post(f"{base}/api/cameras/yard/mute", json={"for_s": 3600}) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/api/mute") as resp:
            until = (await resp.json())["cameras"]["yard"]["muted_until"]
        assert abs(until - (time.time() + 3600)) < 5
        listed = await cameras(http, base)
        # the mute of all has no end, so it is what the yard's tile shows
        assert listed["door"]["muted_by"] == "all" and listed["yard"]["muted_by"] == "all"
        assert server.notifier.muted("door") and server.notifier.muted("anyone-new")
    async with mute_server(data) as (server, base):
        async with http.get(f"{base}/api/mute") as resp:
            overview = await resp.json()
        assert overview["all"]["muted"] and overview["all"]["muted_until"] is None
        assert abs(overview["cameras"]["yard"]["muted_until"] - until) < 2
        async with http.delete(f"{base}/api/mute") as resp:
            assert resp.status == 200 and not (await resp.json())["muted"]
        listed = await cameras(http, base)
        assert not listed["door"]["muted"] and not listed["yard"]["muted"]
    async with mute_server(data) as (server, base):
        assert not server.mute.mutes, "turned off is kept too"


async def test_holds_webhooks_holds_a_muted_cameras_webhooks_and_not_by_default(tmp_path, http):
    """mute.holds = ["notify", "webhooks"]: a muted camera's event reaches no webhook, another camera's does;
    with the default (notify only) the muted camera's webhooks still go."""
    got: list[dict] = []

    async def hook(request):
        got.append(await request.json())
        return web.Response()

    async with receiver(hook) as url:
        for holds, door_hooks in ((["notify", "webhooks"], 0), (["notify"], 2)):
            got.clear()
            async with mute_server(tmp_path / f"data-{len(holds)}", mute={"holds": holds},
                                   webhooks=[{"url": url, "types": ["new", "end"]}]) as (server, base):
                async with http.post(f"{base}/api/cameras/door/mute", json={"for_s": 600}) as resp:
                    assert resp.status == 200
                for name in ("door", "yard"):
                    cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/{name}")
                    await crossing(server, cam, 0)
                    await cam.close()
                await wait_for(lambda: len(got) >= 2 + door_hooks, what="the webhooks")
                await asyncio.sleep(0.5)  # a webhook wrongly sent for the muted camera would be here by now
            cameras_hooked = sorted(m["after"]["camera"] for m in got)
            assert cameras_hooked == ["door"] * door_hooks + ["yard", "yard"], holds


@pytest.mark.parametrize("body, status", [
    ({"for_s": -5}, 400), ({"for_s": 0}, 400), ({"for_s": 1e12}, 400), ({"for_s": "soon"}, 400),
    ({"for_s": True}, 400), ({"for_s": 60, "camera": "x"}, 400), ([1800], 400), ("x" * 2000, 413),
])
async def test_bad_mute_requests_get_a_clear_status(tmp_path, http, body, status):
    """A bad for_s, an unknown key, a non-object or an oversized body: 400/413, nothing muted."""
    async with mute_server(tmp_path / "data") as (server, base):
        kwargs = {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, str) else {"json": body}
        async with http.post(f"{base}/api/cameras/door/mute", **kwargs) as resp:
            assert resp.status == status, await resp.text()
        assert not server.mute.mutes


async def test_unknown_camera_404_and_a_viewer_may_not_mute(tmp_path, http):
    """An unknown camera is 404; with an admin token configured, the viewer token gets 403 and the admin 200."""
    tokens = {"token": "viewer-token-1", "admin_token": "admin-token-1"}
    async with mute_server(tmp_path / "data", http=tokens) as (server, base):
        admin = {"Authorization": "Bearer admin-token-1"}
        async with http.post(f"{base}/api/cameras/nobody/mute", json={}, headers=admin) as resp:
            assert resp.status == 404
        async with http.post(f"{base}/api/mute", json={}, headers={"Authorization": "Bearer viewer-token-1"}) as resp:
            assert resp.status == 403
        async with http.post(f"{base}/api/mute", json={}, headers=admin) as resp:
            assert resp.status == 200
        assert server.mute.muted("door")


class Clocks:
    def __init__(self) -> None:
        self.wall, self.mono = 1_800_000_000.0, 1000.0


async def test_a_wall_clock_step_neither_lengthens_nor_shortens_a_mute(tmp_path):
    """Within a process a mute ends on the monotonic clock: the wall clock stepping an hour either way
    changes nothing, the end shown moves with it; 1800 monotonic seconds end it. Across a restart the
    stored wall-clock end is what is left."""
    clocks = Clocks()
    database = Database(tmp_path)
    await database.open()
    board = MuteBoard(database, wall=lambda: clocks.wall, monotonic=lambda: clocks.mono)
    await board.load()
    await board.set("door", 1800)
    clocks.wall += 3600  # NTP at boot fixes a clock an hour slow
    assert board.muted("door") and board.state("door")["muted_for_s"] == 1800
    assert board.state("door")["muted_until"] == clocks.wall + 1800
    clocks.wall -= 7200
    clocks.mono += 1799
    assert board.muted("door")
    clocks.mono += 1
    assert not board.muted("door") and not board.state("door")["muted"]

    await board.set("yard", 600)
    again = MuteBoard(database, wall=lambda: clocks.wall + 100, monotonic=lambda: 5.0)  # restarted 100 s later
    await again.load()
    assert again.state("yard")["muted_for_s"] == 500
    await database.close()


async def test_a_timed_mute_ends_by_itself_and_says_so(tmp_path):
    """The expiry task ends a 0.3 s mute, tells the listeners and removes it from the database."""
    database = Database(tmp_path)
    await database.open()
    board = MuteBoard(database)
    changed: list[str] = []
    board.listeners.append(changed.append)
    tasks: list[asyncio.Task] = []
    await board.start(lambda stage, coro, name, restart=False: tasks.append(asyncio.create_task(coro())) or tasks[-1])
    await board.set(ALL, 0.3)
    await wait_for(lambda: changed == [ALL, ALL], what="the mute's end announced")
    assert not board.muted("door")
    rows = await database.use(lambda conn: conn.execute("SELECT COUNT(*) FROM mutes").fetchone()[0])
    assert rows == 0
    await board.stop()
    await database.close()


async def test_home_assistant_mute_switch_through_mosquitto(tmp_path, http):
    """Each camera has a switch entity Home Assistant accepts; ON on its command topic mutes the camera until
    turned back off (retained state ON), OFF unmutes it; a mute from the API shows on the switch; a command
    retained at the broker, a bad payload and an unknown camera change nothing."""
    from ha_discovery import check_config
    from test_mqtt import MOSQUITTO, Broker, Subscriber, free_port

    if MOSQUITTO is None:
        pytest.skip("mosquitto not installed")
    import aiomqtt

    broker = Broker(tmp_path, free_port())
    await broker.start()
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port) as stale:  # kept at the broker from long ago
            await stale.publish("camserver/yard/mute/set", "ON", qos=1, retain=True)
        async with Subscriber(broker.port, "camserver/#", "homeassistant/switch/#") as sub, \
                mute_server(tmp_path / "data", mqtt={"host": "127.0.0.1", "port": broker.port}) as (server, base):
            config_topic = "homeassistant/switch/camserver_door/mute/config"
            await sub.wait(lambda: bool(sub.on(config_topic)), "the door's switch config")
            switch = check_config(config_topic, sub.on(config_topic)[-1])
            assert switch["command_topic"] == "camserver/door/mute/set"
            assert switch["state_topic"] == "camserver/door/mute"
            await sub.wait(lambda: sub.on("camserver/door/mute")[-1:] == [b"OFF"], "the switch's state OFF")
            async with aiomqtt.Client("127.0.0.1", broker.port) as ha:
                await ha.publish("camserver/door/mute/set", "ON")
                await wait_for(lambda: server.mute.muted("door"), what="muted by the switch")
                await sub.wait(lambda: sub.on("camserver/door/mute")[-1:] == [b"ON"], "state ON")
                assert server.mute.state("door")["muted_until"] is None  # until turned back off
                await ha.publish("camserver/door/mute/set", "OFF")
                await wait_for(lambda: not server.mute.muted("door"), what="unmuted by the switch")
                await sub.wait(lambda: sub.on("camserver/door/mute")[-1:] == [b"OFF"], "state OFF")
                await ha.publish("camserver/door/mute/set", "louder", qos=1)
                await ha.publish("camserver/nobody/mute/set", "ON", qos=1)
            async with http.post(f"{base}/api/mute", json={"for_s": 1800}) as resp:
                assert resp.status == 200
            await sub.wait(lambda: sub.on("camserver/yard/mute")[-1:] == [b"ON"], "the mute of all on yard's switch")
            assert set(server.mute.mutes) == {ALL}, "the bad, retained and unknown commands changed nothing"
    finally:
        broker.kill()


FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


@pytest.mark.skipif(not FAKETIME.exists(), reason="libfaketime not installed (apt-get install faketime)")
async def test_a_wall_clock_step_in_a_running_server_changes_only_the_end_shown(tmp_path, http, monkeypatch):
    """The server under libfaketime: its wall clock steps an hour ahead, then an hour back, while a camera is
    muted for 30 min; the mute holds with its 30 min left each time, and only muted_until moves with the clock."""
    from serverproc import ServerProcess, config_file

    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    for name, value in (("LD_PRELOAD", str(FAKETIME)), ("FAKETIME_TIMESTAMP_FILE", str(offset)),
                        ("FAKETIME_NO_CACHE", "1"), ("FAKETIME_DONT_FAKE_MONOTONIC", "1")):
        monkeypatch.setenv(name, value)
    server = await ServerProcess.start("--model", "none", "--config", config_file('[cameras]\nids = ["door"]\n'),
                                       cwd=tmp_path)
    monkeypatch.delenv("LD_PRELOAD")
    try:
        async with http.post(f"{server.http}/api/cameras/door/mute", json={"for_s": 1800}) as resp:
            assert resp.status == 200
            first = await resp.json()
        for step, shift in (("+1h", 3600), ("-1h", -3600)):
            offset.write_text(step + "\n")
            door = (await cameras(http, server.http))["door"]
            assert door["muted"], step
            assert 1700 < door["muted_for_s"] <= 1800, (step, door)
            assert abs(door["muted_until"] - (first["muted_until"] + shift)) < 60, (step, door)
    finally:
        assert await server.stop() == 0
