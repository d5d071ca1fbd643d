"""Home Assistant entities the configuration no longer makes are removed at start-up (a real mosquitto)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import aiomqtt
import pytest

from camserver.app import CamServer
from conftest import WAIT_S, ScriptedDetector, connect_camera, make_config, wait_for
from test_mqtt import MOSQUITTO, Broker, free_port

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
    topics = {f"homeassistant/binary_sensor/camserver_{camera}/connectivity/config"}
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
        want_now = entities("door", "person") | set(FOREIGN) | entities("gone")  # gone: its connectivity waits
        await broker_holds(broker.port, want_now, timeout=3.5)  # before the grace ends
        assert srv.mqtt.removed == 6 and time.monotonic() - started < 4.0, "the label entities waited for the grace"
        await broker_holds(broker.port, entities("door", "person") | set(FOREIGN), timeout=WAIT_S + 4)
        assert srv.mqtt.removed == 7 and time.monotonic() - started >= 4.0


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
        assert srv.mqtt.removed == 4
