"""MQTT against a real mosquitto broker: topics, Home Assistant discovery, broker restarts, HA birth, no broker, bad password."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

import aiomqtt
import pytest

from camserver.app import CamServer
from camserver.supervise import describe
from conftest import WAIT_S, ScriptedDetector, connect_camera, make_config, tagged_jpeg, wait_for

MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None
)
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1:port with a config file of our own; ready once a client connects."""

    def __init__(self, folder: Path, port: int, password: tuple[str, str] | None = None) -> None:
        self.folder, self.port = folder, port
        lines = [f"listener {port} 127.0.0.1"]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to its own user, who cannot read our temp folder
        if password:
            pwfile = folder / "passwords"
            subprocess.run(["mosquitto_passwd", "-c", "-b", str(pwfile), *password], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.password = password
        self.proc: subprocess.Popen | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        user, pw = self.password or (None, None)
        async with asyncio.timeout(WAIT_S):
            while True:
                try:
                    async with aiomqtt.Client("127.0.0.1", self.port, username=user, password=pw):
                        return
                except aiomqtt.MqttError:
                    await asyncio.sleep(0.1)  # not listening yet

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
async def broker(tmp_path):
    b = Broker(tmp_path, free_port())
    await b.start()
    yield b
    b.kill()


class Subscriber:
    """An aiomqtt client collecting every message on the given topics."""

    def __init__(self, port: int, *topics: str) -> None:
        self.port, self.topics = port, topics
        self.messages: list[tuple[str, bytes, bool]] = []
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self):
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), WAIT_S)
        return self

    async def __aexit__(self, *exc):
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self):
        async with aiomqtt.Client("127.0.0.1", self.port) as client:
            for topic in self.topics:
                await client.subscribe(topic)
            self._ready.set()
            async for m in client.messages:
                self.messages.append((str(m.topic), bytes(m.payload), bool(m.retain)))

    def on(self, topic: str) -> list[bytes]:
        return [payload for t, payload, _ in self.messages if t == topic]

    async def wait(self, predicate, what: str, timeout: float = WAIT_S) -> None:
        await wait_for(predicate, timeout=timeout, what=what)


def walking(cam, seq):
    return [("person", 0.9, (10.0 + 8 * seq, 60.0, 50.0 + 8 * seq, 200.0))] if 1 <= seq <= 15 else []


def server_for(port: int, **mqtt) -> CamServer:
    config = make_config(mqtt={"host": "127.0.0.1", "port": port, **mqtt}, events={"max_disappeared_s": 0.3})
    return CamServer(config, detector_factory=lambda: ScriptedDetector(walking))


async def send(cam, seqs):
    for seq in seqs:
        await cam.send(tagged_jpeg(0, seq))
        await asyncio.sleep(0.05)


async def test_topics_discovery_counts_events_snapshot(broker, http):
    """Retained online, valid discovery configs, counts up and down, events matching /api/events, a JPEG snapshot."""
    async with Subscriber(broker.port, "camserver/#", "homeassistant/#") as sub, server_for(broker.port) as server:
        await sub.wait(lambda: sub.on("camserver/available") == [b"online"], "available online")
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await sub.wait(lambda: sub.on("camserver/door/status") == [b"online"], "camera online")
        configs = {t: json.loads(p) for t, p, _ in sub.messages if t.startswith("homeassistant/") and p}
        kinds = sorted(t.split("/")[1] + ":" + t.split("/")[3] for t in configs)
        assert kinds == ["binary_sensor:connectivity", "binary_sensor:person_occupancy", "image:person_snapshot",
                         "sensor:person_count", "switch:mute"]
        for config in configs.values():
            assert config["unique_id"].startswith("camserver_door_")
            assert config["availability_topic"] == "camserver/available"
            assert config["device"]["identifiers"] == ["camserver_door"]
            assert config.get("state_topic") or config.get("image_topic")
        assert len({c["unique_id"] for c in configs.values()}) == 5
        await send(cam, range(1, 30))
        await sub.wait(lambda: sub.on("camserver/door/person") == [b"1", b"0"], "count up then down")
        await sub.wait(lambda: len(sub.on("camserver/events")) >= 2 and json.loads(sub.on("camserver/events")[-1])["type"] == "end",
                       "event ended")
        events = [json.loads(p) for p in sub.on("camserver/events")]
        async with http.get(f"http://127.0.0.1:{server.http_port}/api/events") as resp:
            (stored,) = (await resp.json())["events"]
        assert {e["after"]["id"] for e in events} == {stored["id"]}
        # the record as stored, and where its clip is (the API gives the clip's span, MQTT its URL)
        clip_keys = {"clip", "has_clip", "clip_start", "clip_end"}
        ended = {k: v for k, v in events[-1]["after"].items() if k not in clip_keys}
        assert events[0]["type"] == "new" and ended == {k: v for k, v in stored.items() if k not in clip_keys}
        assert events[-1]["after"]["clip"] == f"/api/events/{stored['id']}/clip.mp4"
        snapshots = sub.on("camserver/door/person/snapshot")
        assert snapshots and snapshots[-1][:2] == b"\xff\xd8" and snapshots[-1][-2:] == b"\xff\xd9"
        await cam.close()
        await sub.wait(lambda: sub.on("camserver/door/status")[-1:] == [b"offline"], "camera offline")
    async with Subscriber(broker.port, "camserver/available", "camserver/door/person/snapshot") as after:
        await after.wait(lambda: after.on("camserver/available") == [b"offline"], "offline after a clean stop")
        await after.wait(lambda: after.on("camserver/door/person/snapshot") == snapshots[-1:], "snapshot retained")


async def test_broker_restart_reconnects_and_frames_never_stop(broker, caplog):
    """The broker killed and started again: camserver is back with online and discovery; frames flowed meanwhile."""
    async with server_for(broker.port) as server:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await wait_for(lambda: server.mqtt.state == "connected", what="connected")
        camera = server.hub.get("door")
        broker.kill()
        await wait_for(lambda: server.mqtt.state == "disconnected", what="disconnect noticed")
        before = camera.frames_processed
        await send(cam, range(100, 120))  # frames while the broker is down
        await wait_for(lambda: camera.frames_processed >= before + 15, what="frames flow without the broker")
        await broker.start()  # no persistence: retained messages are gone with the old broker
        async with Subscriber(broker.port, "camserver/#", "homeassistant/#") as sub:
            await sub.wait(lambda: sub.on("camserver/available") == [b"online"], "online again", timeout=35)
            await sub.wait(lambda: any(t.endswith("/connectivity/config") for t, _, _ in sub.messages), "discovery again")
            # the camera's status follows its discovery configs in the same burst: wait for it, then
            # check that it never said anything but online
            await sub.wait(lambda: sub.on("camserver/door/status"), "the camera's status again")
            assert set(sub.on("camserver/door/status")) == {b"online"}
        await cam.close()


async def test_home_assistant_birth_sends_configs_again(broker):
    """Publishing online to homeassistant/status makes the discovery configs come again."""
    async with server_for(broker.port) as server, Subscriber(broker.port, "homeassistant/+/+/+/config") as sub:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await sub.wait(lambda: len(sub.messages) >= 4, "first configs")
        first = len(sub.messages)
        async with aiomqtt.Client("127.0.0.1", broker.port) as ha:
            await ha.publish("homeassistant/status", "online")
        await sub.wait(lambda: len(sub.messages) >= first + 4, "configs again")
        await cam.close()


async def test_no_broker_at_start_server_runs(http):
    """No broker: the server starts, frames flow, /healthz is 200 and says MQTT is disconnected."""
    async with server_for(free_port()) as server:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await send(cam, range(1, 6))
        await wait_for(lambda: server.hub.get("door").frames_processed >= 3)
        await wait_for(lambda: server.mqtt.state == "disconnected")
        async with http.get(f"http://127.0.0.1:{server.http_port}/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["mqtt"] == "disconnected"
        await cam.close()


async def test_wrong_password_one_log_line_keeps_retrying(tmp_path, caplog):
    """A broker that refuses the credentials: one clear log line, and camserver keeps retrying."""
    strict = Broker(tmp_path, free_port(), password=("cam", "right-password"))
    try:
        await strict.start()
        with caplog.at_level(logging.WARNING, logger="camserver.integrations.mqtt"):
            async with server_for(strict.port, username="cam", password="wrong-password") as server:
                await wait_for(lambda: server.mqtt.state == "disconnected", what="refused")
                await asyncio.sleep(3.5)  # long enough for two more tries (1 s, then 2 s): an absence
                assert server.mqtt.state == "disconnected"
        lines = [r.getMessage() for r in caplog.records if "MQTT" in r.getMessage()]
        assert len(lines) == 1, lines
        assert "not connected" in lines[0] and ("authori" in lines[0].lower() or "password" in lines[0].lower()), lines
    finally:
        strict.kill()


async def test_a_refusal_after_a_lost_connection_is_logged_with_its_reason(tmp_path, caplog, http):
    """Connected, then the broker comes back demanding a password: the refusal is logged and shown in /healthz."""
    port = free_port()
    (tmp_path / "open").mkdir()
    (tmp_path / "strict").mkdir()
    open_broker = Broker(tmp_path / "open", port)
    await open_broker.start()
    strict = Broker(tmp_path / "strict", port, password=("cam", "right-password"))
    try:
        with caplog.at_level(logging.WARNING, logger="camserver.integrations.mqtt"):
            async with server_for(port, username="cam", password="wrong-password") as server:
                await wait_for(lambda: server.mqtt.state == "connected", what="connected")
                open_broker.kill()
                await wait_for(lambda: server.mqtt.state == "disconnected", timeout=20, what="connection lost")
                await strict.start()
                await wait_for(lambda: "authori" in server.mqtt.problem.lower(), timeout=40, what="the refusal")
                async with http.get(f"http://127.0.0.1:{server.http_port}/healthz") as resp:
                    health = await resp.json()
                assert health["mqtt"] == "disconnected" and "authori" in health["mqtt_error"].lower()
        lines = [r.getMessage() for r in caplog.records if "MQTT" in r.getMessage()]
        assert len(lines) == 2 and "authori" in lines[1].lower(), lines
    finally:
        open_broker.kill()
        strict.kill()


async def test_motion_topic_and_home_assistant_motion_sensor_follow_each_cameras_motion_setting(broker):
    """A camera with motion detection on gets a motion binary_sensor and ON (retained) while its picture moves;
    a camera whose [cameras.<id>.motion] turns it off gets neither."""
    import cv2

    from camserver.sim.scenes import make_scene

    frames = [cv2.imencode(".jpg", make_scene(i))[1].tobytes() for i in range(20)]  # the simulator's moving scene
    config = make_config(mqtt={"host": "127.0.0.1", "port": broker.port}, motion={"enabled": True},
                         cameras={"ids": ["yard", "still"], "still": {"motion": {"enabled": False}}})
    async with Subscriber(broker.port, "camserver/#", "homeassistant/#") as sub, \
            CamServer(config, detector_factory=lambda: ScriptedDetector(lambda cam, seq: [])) as server:
        yard = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/yard")
        still = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/still")
        for i in range(30):
            await yard.send(frames[i % len(frames)])
            await still.send(frames[i % len(frames)])
            await asyncio.sleep(0.1)
        await sub.wait(lambda: sub.on("camserver/yard/motion")[-1:] == [b"ON"], "yard motion ON")
        configs = {t for t, p, _ in sub.messages if t.startswith("homeassistant/") and p}
        assert "homeassistant/binary_sensor/camserver_yard/motion/config" in configs
        assert "homeassistant/binary_sensor/camserver_still/motion/config" not in configs
        assert "homeassistant/binary_sensor/camserver_still/connectivity/config" in configs
        assert sub.on("camserver/still/motion") == []
        async with Subscriber(broker.port, "camserver/yard/motion") as late:  # retained: a new client gets it
            await late.wait(lambda: late.messages[-1:] == [("camserver/yard/motion", b"ON", True)], "the retained ON")
        await yard.close()
        await still.close()


HOSTILE = ("a#b", "c+d", "e/f", "ünï code")  # wildcards, a level separator, non-ASCII and a space


class LabelDetector:
    """Each label of `labels` as its own class, side by side, in frames 1 to 15 of the tagged sequence."""

    def __init__(self, labels: tuple[str, ...]) -> None:
        from camserver.detect import BackendInfo

        self.labels = labels
        self.info = BackendInfo("labels", "cpu", "fp32", 4)

    def detect(self, images):
        from camserver.detect import Detection
        from conftest import read_tag

        out = []
        for img in images:
            _, seq = read_tag(img)
            out.append([Detection(i, label, 0.9, (5.0 + 75 * i, 20.0, 70.0 + 75 * i, 180.0))
                        for i, label in enumerate(self.labels)] if 1 <= seq <= 15 else [])
        return out

    def draw(self, image, detections):
        return image


async def test_hostile_labels_give_valid_topics_and_discovery_and_the_server_lives(broker, http):
    """Labels with '#', '+', '/' and non-ASCII: events stored as named, every topic valid, Home Assistant's
    discovery parses, each label's count goes 1 then 0 on its own topic, and the server stays up."""
    from ha_discovery import check_config, valid_publish_topic

    config = make_config(mqtt={"host": "127.0.0.1", "port": broker.port},
                         events={"max_disappeared_s": 0.3, "labels": ["*"]})
    async with Subscriber(broker.port, "camserver/#", "homeassistant/#") as sub, \
            CamServer(config, detector_factory=lambda: LabelDetector(HOSTILE)) as server:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await send(cam, range(1, 30))

        async def ended() -> list[dict]:
            async with http.get(f"http://127.0.0.1:{server.http_port}/api/events") as resp:
                return [e for e in (await resp.json())["events"] if e["end_time"] is not None]

        async with asyncio.timeout(WAIT_S * 2):
            while len(events := await ended()) < len(HOSTILE) and server.supervisor.failed is None:
                await asyncio.sleep(0.1)
        assert server.supervisor.failed is None, f"the {server.supervisor.failed} stage died"
        assert sorted(e["label"] for e in events) == sorted(HOSTILE)
        configs = {}
        await sub.wait(lambda: len({t for t, p, _ in sub.messages if t.endswith("_count/config") and p}) == 4,
                       "a count entity per label")
        for topic, payload, _ in sub.messages:
            assert valid_publish_topic(topic), topic
            if topic.startswith("homeassistant/") and payload:
                configs[topic] = check_config(topic, payload)
        counts = {c["name"].removesuffix(" count"): c["state_topic"] for c in configs.values()
                  if c["unique_id"].endswith("_count")}
        assert sorted(counts) == sorted(HOSTILE)
        assert len(set(counts.values())) == len(HOSTILE)  # one topic each: no two labels collide
        for label, state in counts.items():
            await sub.wait(lambda state=state: sub.on(state) == [b"1", b"0"], f"the count of {label!r} up and down")
        announced = {json.loads(p)["after"]["label"] for p in sub.on("camserver/events")}
        assert announced == set(HOSTILE)
        async with http.get(f"http://127.0.0.1:{server.http_port}/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["mqtt"] == "connected"
        assert server.mqtt.state == "connected" and server.supervisor.failed is None
        await cam.close()


async def test_every_discovery_config_is_what_current_home_assistant_accepts(broker):
    """Each entity's config has only keys Home Assistant's MQTT discovery documents for its platform, a
    default_entity_id (with the same object_id for older versions), and the device's firmware and page link."""
    from ha_discovery import check_config

    import cv2

    from camserver.sim.scenes import make_scene

    frames = [cv2.imencode(".jpg", make_scene(i))[1].tobytes() for i in range(20)]
    config = make_config(mqtt={"host": "127.0.0.1", "port": broker.port}, motion={"enabled": True},
                         http={"public_url": "https://cams.example.net"}, cameras={"ids": ["door"]})
    person = lambda cam, seq: [("person", 0.9, (40.0, 40.0, 200.0, 400.0))]  # noqa: E731
    async with Subscriber(broker.port, "homeassistant/#") as sub, \
            CamServer(config, detector_factory=lambda: ScriptedDetector(person)) as server:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await cam.send(json.dumps({"type": "hello", "camera_id": "door", "firmware": "1.4.2"}))
        await sub.wait(lambda: any(json.loads(p)["device"].get("sw_version") == "1.4.2"
                                   for t, p, _ in sub.messages if p), "configs with the firmware")
        for i in range(40):
            await cam.send(frames[i % len(frames)])
            await asyncio.sleep(0.05)
        await sub.wait(lambda: any(t.endswith("person_snapshot/config") for t, p, _ in sub.messages if p),
                       "the person entities")
        latest = {t: p for t, p, _ in sub.messages}  # the last config of each entity
        configs = {t: check_config(t, p) for t, p in latest.items() if p}
        await cam.close()
    assert sorted(c["default_entity_id"] for c in configs.values()) == [
        "binary_sensor.camserver_door_connectivity", "binary_sensor.camserver_door_motion",
        "binary_sensor.camserver_door_person_occupancy", "image.camserver_door_person_snapshot",
        "sensor.camserver_door_person_count", "switch.camserver_door_mute"]
    for config in configs.values():
        assert config["device"]["sw_version"] == "1.4.2"
        assert config["device"]["configuration_url"] == "https://cams.example.net/#/camera/door"
        assert config["origin"]["name"] == "camserver"


async def test_an_integration_that_dies_is_restarted_and_the_server_goes_on(broker, http, caplog):
    """A bug kills the MQTT task: the server keeps serving, /healthz counts the restart and its error, the
    task starts again after a backoff and publishes again; the log has one line with the traceback."""
    async with Subscriber(broker.port, "camserver/available") as sub, server_for(broker.port) as server:
        await wait_for(lambda: server.mqtt.state == "connected", what="connected")
        real, failures = server.mqtt._everything, []

        def broken():
            if not failures:
                failures.append(1)
                raise RuntimeError("a bug in the publisher")
            return real()

        server.mqtt._everything = broken
        async with aiomqtt.Client("127.0.0.1", broker.port) as ha:  # Home Assistant's birth: everything again
            await ha.publish("homeassistant/status", "online")
        await wait_for(lambda: "mqtt" in server.supervisor.restarts, what="the restart")
        async with http.get(f"http://127.0.0.1:{server.http_port}/healthz") as resp:
            health = await resp.json()
        assert resp.status == 200 and health["status"] != "failed" and "failed_stage" not in health
        assert health["stage_restarts"]["mqtt"]["restarts"] == 1
        assert "a bug in the publisher" in health["stage_restarts"]["mqtt"]["last_error"]
        assert health["mqtt"] == "failed" and "a bug in the publisher" in health["mqtt_error"]
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")  # the cameras side is unaffected
        await send(cam, range(1, 4))
        await wait_for(lambda: server.hub.get("door").frames_processed >= 2, what="frames flow")
        count = len(sub.on("camserver/available"))
        await wait_for(lambda: server.mqtt.state == "connected", timeout=WAIT_S, what="connected again")
        await sub.wait(lambda: len(sub.on("camserver/available")) > count, "online again after the restart")
        assert server.supervisor.failed is None and not server.supervisor.failure.is_set()
        await cam.close()
    lines = [r for r in caplog.records if "stage mqtt" in r.getMessage()]
    # the error may reach the supervisor inside aiomqtt's TaskGroup's ExceptionGroup: the line's traceback has it
    assert len(lines) == 1 and lines[0].exc_info is not None and "a bug in the publisher" in describe(lines[0].exc_info[1])


def test_topic_keys_are_safe_stable_and_distinct():
    """Safe names are unchanged; others become [A-Za-z0-9_-] with a hash; names that look alike stay apart."""
    from camserver.integrations.homeassistant import entity_slug, topic_key

    for name in ("person", "traffic_light", "door-2", "A"):
        assert topic_key(name) == name
    hostile = ["a#b", "a+b", "a/b", "a b", "a_b_" + "0" * 8, "ünï code", "uni code", "status", "motion", "", "日本",
               "x" * 10_000, "x" * 10_001, "\x00", "$SYS"]
    keys = [topic_key(name) for name in hostile]
    assert len(set(keys)) == len(hostile), keys  # no two collide
    assert "a_b" not in keys  # an escaped name never equals a safe one
    for name, key in zip(hostile, keys):
        assert key == topic_key(name)  # a function of the name alone
        assert 1 <= len(key) <= 49 and all(c.isascii() and (c.isalnum() or c in "_-") for c in key), key
    assert topic_key("ünï code").startswith("uni_code_") and topic_key("a#b").startswith("a_b_")
    assert entity_slug("camserver_door_cell phone_occupancy") == "camserver_door_cell_phone_occupancy"
    assert entity_slug("camserver_Door_ünï  code__count") == "camserver_door_uni_code_count"
