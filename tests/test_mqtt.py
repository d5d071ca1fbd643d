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
                         "sensor:person_count"]
        for config in configs.values():
            assert config["unique_id"].startswith("camserver_door_")
            assert config["availability_topic"] == "camserver/available"
            assert config["device"]["identifiers"] == ["camserver_door"]
            assert config.get("state_topic") or config.get("image_topic")
        assert len({c["unique_id"] for c in configs.values()}) == 4
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
