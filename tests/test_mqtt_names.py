"""A camera's name in Home Assistant through a real mosquitto: its device is named "camserver <id>" until a name is
saved from the page (PATCH /api/config); then every discovery config of the camera comes again within 2 s, with
the device named as the camera is, and its entities keep their unique ids (Home Assistant renames, does not
duplicate)."""

from __future__ import annotations

import json
import time

from conftest import connect_camera, feeding
from test_configapi import patch, read_config, served, shipped_copy
from test_mqtt import Subscriber, broker  # noqa: F401 (the fixture)

CONNECTIVITY = "homeassistant/binary_sensor/camserver_door/connectivity/config"


def devices(sub: Subscriber) -> list[tuple[str, str]]:
    """(device name, unique id) of each connectivity config received, in order."""
    return [(c["device"]["name"], c["unique_id"]) for c in map(json.loads, filter(None, sub.on(CONNECTIVITY)))]


async def test_a_saved_name_renames_the_cameras_home_assistant_device(tmp_path, http, broker):  # noqa: F811
    file = shipped_copy(tmp_path)
    file.apply({"mqtt": {"host": "127.0.0.1", "port": broker.port}}, file.read()[1])
    async with served(file) as (server, base), Subscriber(broker.port, "homeassistant/+/+/+/config") as sub:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        try:
            async with feeding(cam, fps=5):
                await sub.wait(lambda: devices(sub)[-1:] == [("camserver door", "camserver_door_connectivity")],
                               "the device under its id")
                first = len(sub.messages)
                version = (await read_config(http, base))["version"]
                status, body = await patch(http, base, {"cameras": {"door": {"name": "Front door"}}}, version)
                assert status == 200 and body["applied_live"] == ["cameras.door.name"], body
                saved = time.monotonic()
                await sub.wait(lambda: devices(sub)[-1:] == [("Front door", "camserver_door_connectivity")],
                               "the device under its name", timeout=2.0)
                assert time.monotonic() - saved < 2.0
                again = {t for t, _, _ in sub.messages[first:]}
                assert "homeassistant/switch/camserver_door/mute/config" in again, again  # every entity's device
        finally:
            await cam.close()
