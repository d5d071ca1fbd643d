"""Notifications end to end: the trained shapes model, the real tracker, a fake ntfy server.

A person crossing gives one message with a picture that shows the person, within 2 s of the
event's `new`; a second crossing inside cooldown_s gives none; zones hold messages back until
the object enters one; a target that hangs delays neither the stream nor the other target; no
secret of a URL ever reaches the log at debug level. And the test endpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import aiohttp
import cv2
import pytest
import websockets

from serverproc import ServerProcess
from camserver.app import CamServer
from conftest import FakeDetector, WAIT_S, connect_camera, decode, is_green, make_config, make_jpeg, mjpeg, wait_for
from camserver.sim.simcam import make_scene
from fake_ntfy import fake_ntfy
from test_events_e2e import TESTDATA, person_frames

needs_model = pytest.mark.skipif(not (TESTDATA / "shapes-yolo11n.pt").exists(),
                                 reason="../shared/testdata (the shapes model) not beside the checkout")

SECRETS = ("pw-Secret7", "door-Secret1", "walk-Secret2", "porch-Secret3", "stuck-Secret4")
ZONES = [
    {"camera": "door", "name": "walk", "points": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]},  # the right half
    {"camera": "door", "name": "porch", "points": [[0, 0], [0.15, 0], [0.15, 0.3], [0, 0.3]]},  # never crossed
]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """One export cache for the module: the model is converted for OpenVINO once, not per test."""
    return tmp_path_factory.mktemp("model-cache")


def empty_frame() -> bytes:
    return cv2.imencode(".jpg", make_scene(99), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def finds_person(jpeg: bytes) -> bool:
    """Whether the shapes model finds a person in a JPEG."""
    from ultralytics import YOLO

    model = YOLO(str(TESTDATA / "shapes-yolo11n.pt"))
    boxes = model.predict(decode(jpeg), imgsz=320, conf=0.25, verbose=False)[0].boxes
    return any(model.names[int(c)] == "person" for c in boxes.cls.tolist())


async def walk_past(cam, frames: list[bytes], empty: bytes) -> None:
    """A person crosses at 10 fps, then 2 s of empty scene end the event (max_disappeared_s = 1)."""
    for frame in frames + [empty] * 20:
        await cam.send(frame)
        await asyncio.sleep(0.1)


@needs_model
async def test_crossing_notifies_once_with_the_person_and_cooldown_and_zones_hold_back(tmp_path, caplog, model_cache):
    """One message within 2 s of `new` with a JPEG that shows the person; a second crossing inside
    cooldown_s gives none; a zone never entered gives none; a zone entered after `new` gives one,
    on entry; /healthz counts them with redacted URLs; no URL secret in the debug log."""
    caplog.set_level(logging.DEBUG)
    async with fake_ntfy() as fake:
        config = make_config(
            detect={"model": str(TESTDATA / "shapes-yolo11n.pt"), "imgsz": 320, "cache_dir": str(model_cache)},
            events={"max_disappeared_s": 1.0, "zones": ZONES}, storage={"dir": str(tmp_path / "data")},
            http={"host": "127.0.0.1", "port": 0, "public_url": "http://cams.example:8080"},
            notify=[
                {"urls": [f"ntfy://user:pw-Secret7@{fake.url}/door-Secret1"], "labels": ["person"], "cooldown_s": 600},
                {"urls": [f"ntfy://{fake.url}/walk-Secret2"], "zones": ["walk"], "cooldown_s": 600, "attach": "crop"},
                {"urls": [f"ntfy://{fake.url}/porch-Secret3"], "zones": ["porch"], "cooldown_s": 0},
            ],
        )
        changes: list[tuple[float, object]] = []
        frames, empty = person_frames(30), empty_frame()
        async with CamServer.from_config(config) as server:
            server.events.listeners.append(lambda change: changes.append((time.monotonic(), change)))
            async with websockets.connect(f"ws://127.0.0.1:{server.ws_port}/ws/door", compression=None) as cam:
                await walk_past(cam, frames, empty)
                await wait_for(lambda: any(c.type == "end" for _, c in changes), timeout=30,
                               what="the first event ended")
                await fake.wait(lambda: len(fake.received) >= 2, what="the first crossing's messages")
                await walk_past(cam, frames, empty)
                await wait_for(lambda: sum(c.type == "end" for _, c in changes) == 2, timeout=30,
                               what="the second event ended")
            await wait_for(lambda: server.events.idle, what="events idle")
            await asyncio.sleep(0.5)  # a message sent wrongly for the second crossing would arrive by now
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{server.http_port}/healthz") as resp:
                    health_text = await resp.text()
    news = [(t, c) for t, c in changes if c.type == "new"]
    assert len(news) == 2 and all(c.after["announced"] for _, c in news), "two announced events"
    (t_new, first), (_, second) = news

    (door,) = fake.on("door-Secret1")
    assert door.at - t_new < 2.0, f"{door.at - t_new:.2f} s after new"
    assert door.title == "Person at door"
    assert door.message.endswith(f"\nhttp://cams.example:8080/#/events/{first.after['id']}")
    assert finds_person(door.attachment), "the attached picture shows no person"

    (walk,) = fake.on("walk-Secret2")
    assert "walk" not in first.after["entered_zones"], "the person was seen before reaching the zone"
    entered = min(t for t, c in changes if c.after["id"] == first.after["id"] and "walk" in c.after["entered_zones"])
    assert entered <= walk.at < entered + 2.0
    assert "in walk" in walk.message
    crop = decode(walk.attachment)
    assert crop.shape[0] < 480 and crop.shape[1] < 640  # cropped around the person
    assert fake.on("porch-Secret3") == []
    assert second.after["id"] != first.after["id"]

    health = json.loads(health_text)["notify"]
    assert [(h["url"], h["sent"], h["failed"], h["dropped"]) for h in health] == [
        (f"ntfy://{fake.url}", 1, 0, 0), (f"ntfy://{fake.url}", 1, 0, 0), (f"ntfy://{fake.url}", 0, 0, 0)]
    assert not any(s in health_text for s in SECRETS)
    # the log had Apprise's and urllib3's lines at debug (scrubbed), and no secret anywhere
    assert any(r.name == "apprise" for r in caplog.records) and "POST /***" in caplog.text
    assert not any(s in caplog.text for s in SECRETS), [s for s in SECRETS if s in caplog.text]


@needs_model
async def test_hanging_target_delays_neither_the_stream_nor_the_other_target(tmp_path, model_cache):
    """The server as a process at debug level: one URL hangs 30 s; the other gets its message within
    2 s of `new`, the MJPEG stream keeps its pace, the camera is never held up, and the process log
    holds no secret of either URL."""
    async with fake_ntfy() as fake:
        fake.hang = {"stuck-Secret4"}
        config = tmp_path / "camserver.toml"
        config.write_text(
            f'[storage]\ndir = "{tmp_path / "data"}"\n[detect]\ncache_dir = "{model_cache}"\n'
            '[events]\nmax_disappeared_s = 1.0\n[log]\nlevel = "debug"\n'
            f'[[notify]]\nurls = ["ntfy://{fake.url}/stuck-Secret4",'
            f' "ntfy://user:pw-Secret7@{fake.url}/door-Secret1"]\n')
        server = await ServerProcess.start("--config", str(config), "--model", str(TESTDATA / "shapes-yolo11n.pt"),
                                           "--imgsz", "320", cwd=tmp_path, timeout=120)
        try:
            new_at: list[float] = []
            parts: list[float] = []

            async def watch_events(http: aiohttp.ClientSession) -> None:
                async with http.get(f"{server.http}/api/events/stream") as resp:
                    async for line in resp.content:
                        if line.startswith(b"event: new"):
                            new_at.append(time.monotonic())

            async def watch_stream(http: aiohttp.ClientSession) -> None:
                async with mjpeg(http, f"{server.http}/cameras/door/stream.mjpg") as viewer:
                    while True:
                        await viewer.next_live(timeout=30)
                        parts.append(time.monotonic())

            frames = person_frames(30)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as http:
                async with websockets.connect(server.ws("door"), compression=None) as cam:
                    await cam.send(frames[0])
                    watchers = [asyncio.create_task(watch_events(http)), asyncio.create_task(watch_stream(http))]
                    await wait_for(lambda: len(parts) >= 1, timeout=30, what="the stream")
                    started = time.monotonic()
                    for frame in frames[1:]:
                        await cam.send(frame)
                        await asyncio.sleep(0.1)
                    sent_for = time.monotonic() - started
                    await fake.wait(lambda: len(fake.on("door-Secret1")) == 1, what="the good target's message")
                    assert [t for t, _ in fake.requests].count("stuck-Secret4") >= 1  # in flight, hanging
                    for _ in range(20):  # the stream goes on while the stuck send is still waiting
                        await cam.send(empty_frame())
                        await asyncio.sleep(0.1)
                    async with http.get(f"{server.http}/healthz") as resp:
                        health_text = await resp.text()
                for task in watchers:
                    task.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
        finally:
            code = await server.stop()
    assert code == 0
    assert sent_for < 29 * 0.1 + 1.5, f"the camera was held up: {sent_for:.1f} s for 29 frames"
    (door,) = fake.on("door-Secret1")
    assert new_at and door.at - new_at[0] < 2.0, f"{door.at - new_at[0]:.2f} s after new"
    during = [t for t in parts if t >= new_at[0]]
    gaps = [b - a for a, b in zip(during, during[1:])]
    assert len(during) >= 15 and max(gaps) < 1.0, f"{len(during)} parts, largest gap {max(gaps, default=0):.2f} s"
    health = {h["target"]: h for h in json.loads(health_text)["notify"]}
    assert health["notify[0].urls[1]"]["sent"] == 1 and health["notify[0].urls[0]"]["sent"] == 0
    log_text = "".join(server.lines)
    assert "DEBUG" in log_text and "apprise" in log_text
    assert not any(s in log_text for s in SECRETS), [s for s in SECRETS if s in log_text]


async def test_test_endpoint_sends_the_latest_picture_and_answers_per_target():
    """POST /api/notify/test: every target gets a test message with the camera's latest (annotated)
    picture, or text where the service takes no attachments; the answer says per target, redacted,
    whether it went; an unknown camera is 404, a bad body 400; no [[notify]] table, 404."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    async with fake_ntfy() as fake:
        config = make_config(notify=[
            {"urls": [f"ntfy://user:pw-Secret7@{fake.url}/door-Secret1", f"ntfy://127.0.0.1:{dead}/stuck-Secret4"]},
            {"urls": [f"gotify://{fake.url}/AppTokenX"]},
        ])
        detector = FakeDetector()
        async with CamServer(config, detector_factory=lambda: detector) as server:
            base = f"http://127.0.0.1:{server.http_port}"
            cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
            await cam.send(make_jpeg(1))
            await wait_for(lambda: (c := server.hub.get("door")) is not None and c.frames_processed >= 1,
                           what="a processed frame")
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_S * 2)) as http:
                async with http.post(f"{base}/api/notify/test", json={"camera": "door"}) as resp:
                    assert resp.status == 200
                    text = await resp.text()
                async with http.post(f"{base}/api/notify/test", json={"camera": "nope"}) as resp:
                    assert resp.status == 404
                async with http.post(f"{base}/api/notify/test", data=b"[1, 2",
                                     headers={"Content-Type": "application/json"}) as resp:
                    assert resp.status == 400
                async with http.get(f"{base}/healthz") as resp:
                    health_text = await resp.text()
            await cam.close()
        answer = json.loads(text)
    assert answer["camera"] == "door" and answer["picture"] is True
    results = {r["target"]: r for r in answer["results"]}
    assert results["notify[0].urls[0]"] == {"target": "notify[0].urls[0]", "url": f"ntfy://{fake.url}",
                                            "ok": True, "error": None}
    failed = results["notify[0].urls[1]"]
    assert failed["url"] == f"ntfy://127.0.0.1:{dead}" and failed["ok"] is False and failed["error"]
    assert results["notify[1].urls[0]"]["ok"] is True
    assert not any(s in text + health_text for s in SECRETS + ("AppTokenX",))
    (phone,) = fake.on("door-Secret1")
    assert phone.title == "camserver: test notification" and "camera door" in phone.message
    assert is_green(decode(phone.attachment))  # the annotated frame: the fake detector's box
    (gotify,) = fake.on("gotify:AppTokenX")
    assert gotify.attachment is None and "camera door" in gotify.message

    async with CamServer(make_config(), detector_factory=None) as server:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{server.http_port}/api/notify/test") as resp:
                assert resp.status == 404
                assert (await resp.json())["error"] == "no notification targets"
