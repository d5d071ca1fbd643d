"""Nothing stale stays on the broker (a real mosquitto): entities the configuration no longer makes are removed,
and the states a clean stop or a crash would leave (online, motion ON, a count) are set right."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import textwrap
import time

import aiomqtt
import pytest

from camserver.app import CamServer
from conftest import WAIT_S, ScriptedDetector, connect_camera, make_config, wait_for
from serverproc import ServerProcess
from test_mqtt import MOSQUITTO, Broker, Subscriber, free_port

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto not installed (.ci/run installs it)")

FOREIGN = {
    "homeassistant/sensor/zigbee_kitchen/temperature/config": {"name": "kitchen", "state_topic": "z2m/kitchen"},
    # another camserver on the same broker (its own topic prefix): not ours to clear
    "homeassistant/binary_sensor/camserver_porch/persn_occupancy/config": {
        "name": "x", "unique_id": "camserver_porch_persn_occupancy", "availability_topic": "garage-cams/available"},
}


@pytest.fixture
async def broker(tmp_path):
    b = Broker(tmp_path, free_port())
    await b.start()
    yield b
    b.kill()


def server(port: int, grace_s: float = 120.0, **tables) -> CamServer:
    mqtt = {"host": "127.0.0.1", "port": port, **tables.pop("mqtt", {})}
    config = make_config(mqtt=mqtt, **tables)
    srv = CamServer(config, detector_factory=lambda: ScriptedDetector(lambda cam, seq: []))
    srv.mqtt.forget_grace_s = grace_s
    return srv


async def retained_configs(port: int) -> set[str]:
    """The discovery topics the broker holds a config for now (a marker message ends the retained burst)."""
    marker = f"test/marker/{secrets.token_hex(4)}"
    found: set[str] = set()
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe("homeassistant/+/+/+/config")
        await client.subscribe(marker)
        await client.publish(marker, b"end")
        async with asyncio.timeout(WAIT_S):
            async for message in client.messages:
                if str(message.topic) == marker:
                    return found
                if message.payload:
                    found.add(str(message.topic))
    return found


async def broker_holds(port: int, want: set[str], timeout: float = WAIT_S) -> None:
    """Until the broker's retained configs are exactly `want` (the server's clears travel asynchronously)."""
    async with asyncio.timeout(timeout):
        while (held := await retained_configs(port)) != want:
            await asyncio.sleep(0.1)
    assert held == want


def entities(camera: str, *labels: str) -> set[str]:
    topics = {f"homeassistant/binary_sensor/camserver_{camera}/connectivity/config",
              f"homeassistant/switch/camserver_{camera}/mute/config"}
    for label in labels:
        topics |= {f"homeassistant/binary_sensor/camserver_{camera}/{label}_occupancy/config",
                   f"homeassistant/sensor/camserver_{camera}/{label}_count/config",
                   f"homeassistant/image/camserver_{camera}/{label}_snapshot/config"}
    return topics


async def earlier_run(port: int, cameras: list[str], labels: list[str]) -> None:
    """A server run that left retained entities behind for `cameras` and `labels`, plus another integration's."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic, config in FOREIGN.items():
            await client.publish(topic, json.dumps(config), retain=True)
    async with server(port, events={"labels": labels}) as srv:
        cams = [await connect_camera(f"ws://127.0.0.1:{srv.ws_port}/ws/{c}") for c in cameras]
        want = set().union(*(entities(c, *labels) for c in cameras))
        await wait_for(lambda: srv.mqtt.state == "connected" and not srv.mqtt.outbox, what="configs sent")
        for cam in cams:
            await cam.close()
    await broker_holds(port, want | set(FOREIGN))


async def test_a_removed_label_goes_at_once_and_a_forgotten_camera_after_the_grace(broker):
    """Typo 'persn' fixed to 'person': its entities are cleared at connect; an undeclared camera that does not
    come back is cleared after the grace; other integrations' and another camserver's configs stay."""
    await earlier_run(broker.port, ["door", "gone"], ["persn"])
    started = time.monotonic()
    async with server(broker.port, grace_s=4.0, events={"labels": ["person"]}, cameras={"ids": ["door"]}) as srv:
        want_now = entities("door", "person") | set(FOREIGN) | entities("gone")  # gone: its camera entities wait
        await broker_holds(broker.port, want_now, timeout=3.5)  # before the grace ends
        assert srv.mqtt.removed == 6 and time.monotonic() - started < 4.0, "the label entities waited for the grace"
        await broker_holds(broker.port, entities("door", "person") | set(FOREIGN), timeout=WAIT_S + 4)
        assert srv.mqtt.removed == 8 and time.monotonic() - started >= 4.0


async def test_a_camera_back_within_the_grace_keeps_its_entities(broker):
    """An undeclared camera that reconnects after a restart never has its entities cleared."""
    await earlier_run(broker.port, ["yard"], ["person"])
    cleared: list[str] = []

    async def watch():
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("homeassistant/+/camserver_yard/+/config")
            async for message in client.messages:
                if not message.payload:
                    cleared.append(str(message.topic))

    watcher = asyncio.create_task(watch())
    try:
        async with server(broker.port, grace_s=2.0) as srv:
            cam = await connect_camera(f"ws://127.0.0.1:{srv.ws_port}/ws/yard")
            await asyncio.sleep(2.0 + 2.5)  # past the grace and the settle time: an absence, so it waits
            assert srv.mqtt.removed == 0 and cleared == []
            await cam.close()
        await broker_holds(broker.port, entities("yard", "person") | set(FOREIGN))
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def test_home_assistant_off_removes_every_entity_of_ours(broker):
    """mqtt.homeassistant = false: the entities an earlier run made are removed, others' stay."""
    await earlier_run(broker.port, ["door"], ["person"])
    async with server(broker.port, grace_s=0.5, mqtt={"homeassistant": False}, cameras={"ids": ["door"]}) as srv:
        await broker_holds(broker.port, set(FOREIGN))
        assert srv.mqtt.removed == 5


# --- states a stop or a crash would leave behind -------------------------------------------------

CAMERAS = ("door", "yard")  # door is declared in cameras.ids, yard is not


def moving_frames(n: int = 20) -> list[bytes]:
    """The simulator's moving scene as JPEGs: motion turns ON."""
    import cv2

    from camserver.sim.scenes import make_scene

    return [cv2.imencode(".jpg", make_scene(i))[1].tobytes() for i in range(n)]


def person_everywhere(cam, seq):
    return [("person", 0.9, (40.0, 40.0, 200.0, 400.0))]


def last(sub: Subscriber, topic: str) -> bytes | None:
    values = sub.on(topic)
    return values[-1] if values else None


async def occupied(sub: Subscriber, cams, frames: list[bytes]) -> None:
    """Send moving frames until every camera is online, its motion ON and one person counted."""
    async with asyncio.timeout(WAIT_S * 3):
        i = 0
        while not all(last(sub, f"camserver/{c}/person") == b"1" and last(sub, f"camserver/{c}/motion") == b"ON"
                      and last(sub, f"camserver/{c}/status") == b"online" for c in CAMERAS):
            for cam in cams:
                await cam.send(frames[i % len(frames)])
            i += 1
            await asyncio.sleep(0.1)


def left_right(sub: Subscriber) -> bool:
    """Every camera offline, its motion OFF and no person counted, by the last message of each topic."""
    return all(last(sub, f"camserver/{c}/person") == b"0" and last(sub, f"camserver/{c}/motion") == b"OFF"
               and last(sub, f"camserver/{c}/status") == b"offline" for c in CAMERAS)


async def test_a_clean_stop_says_every_camera_offline_motion_off_and_nobody_there(broker):
    """Stopped with cameras moving and a person in view (declared and undeclared cameras): before the
    server goes offline each camera's status is offline, its motion OFF and its count 0, retained for HA."""
    config = make_config(mqtt={"host": "127.0.0.1", "port": broker.port}, motion={"enabled": True},
                         cameras={"ids": ["door"]}, events={"max_disappeared_s": 30.0})
    frames = moving_frames()
    async with Subscriber(broker.port, "camserver/#") as sub:
        server = CamServer(config, detector_factory=lambda: ScriptedDetector(person_everywhere))
        async with server:
            cams = [await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/{c}") for c in CAMERAS]
            await occupied(sub, cams, frames)
        await sub.wait(lambda: last(sub, "camserver/available") == b"offline", "the server's offline")
        # everything else was said before it (one publisher, one subscriber: in order)
        assert left_right(sub), sub.messages[-12:]
        assert [t for t, _, _ in sub.messages][-1] == "camserver/available"
    async with Subscriber(broker.port, "camserver/+/status", "camserver/+/motion") as late:  # what HA gets later
        await late.wait(lambda: len(late.messages) == 4, "the retained states")
        assert {(t, p) for t, p, _ in late.messages} == {
            (f"camserver/{c}/{what}", value) for c in CAMERAS for what, value in (("status", b"offline"),
                                                                                 ("motion", b"OFF"))}


CHILD = textwrap.dedent("""
    import sys
    from camserver import app
    from camserver.cli import main
    from camserver.detect import BackendInfo, Detection

    class PersonEverywhere:
        info = BackendInfo("person-everywhere", "cpu", "fp32", 1)

        def detect(self, images):
            return [[Detection(0, "person", 0.9, (40.0, 40.0, 200.0, 400.0))] for _ in images]

        def draw(self, image, detections):
            return image

    app.default_detector_factory = lambda config: PersonEverywhere
    sys.argv[0] = "camserver"
    raise SystemExit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("homeassistant", ["true", "false"])
async def test_killed_during_a_person_event_the_restart_sets_every_state_right_within_5_s(broker, tmp_path,
                                                                                          homeassistant):
    """SIGKILL with a person in view of a declared and an undeclared camera, both moving: within 5 s of the
    restart (the cameras still away) each count is 0, each motion OFF and each camera offline, through mosquitto;
    without Home Assistant's retained configs too (the counts then come from the events the crash left open)."""
    (tmp_path / "child.py").write_text(CHILD)
    config = tmp_path / "camserver.toml"
    config.write_text(f'[storage]\ndir = "{tmp_path / "data"}"\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nhomeassistant = {homeassistant}\n'
                      '[motion]\nenabled = true\n[cameras]\nids = ["door"]\n[events]\nmax_disappeared_s = 30.0\n')
    args = ("--config", str(config), "--model", "person-everywhere.pt")  # a name: the child's detector is no file
    frames = moving_frames()
    async with Subscriber(broker.port, "camserver/#") as sub:
        server = await ServerProcess.start(*args, cwd=tmp_path, module="child", timeout=WAIT_S * 6)
        try:
            cams = [await connect_camera(server.ws(c)) for c in CAMERAS]
            await occupied(sub, cams, frames)
            server.proc.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(server.proc.wait(), WAIT_S) == -signal.SIGKILL
        finally:
            if server.proc.returncode is None:
                server.proc.kill()
            await server.stop()
        for cam in cams:
            await cam.close()
        await sub.wait(lambda: last(sub, "camserver/available") == b"offline", "the last will")
        assert not left_right(sub)  # what a crash leaves: a person "home", motion ON, yard connected
        assert last(sub, "camserver/yard/status") == b"online"
        launched = time.monotonic()
        server = await ServerProcess.start(*args, cwd=tmp_path, module="child", timeout=WAIT_S * 6)
        try:
            listening = time.monotonic()
            await sub.wait(lambda: left_right(sub), "every state set right", timeout=5.0)
            took = time.monotonic() - listening
            print(f"states right {took:.2f} s after the restart listened, {time.monotonic() - launched:.2f} s after launch")
            assert last(sub, "camserver/available") == b"online"
        finally:
            assert await server.stop() == 0
