"""One event through a real server reaches every consumer in one shape (events/shape.py): the live
feed (SSE), a webhook, MQTT `events` and /api/events give the same fields with the same values."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import aiohttp
import aiomqtt
from aiohttp import web

from camserver.app import CamServer
from conftest import ScriptedDetector, connect_camera, make_config, person_between, tagged_jpeg, wait_for
from hooks import receiver
from recordkit import needs_ffmpeg
from test_mqtt import MOSQUITTO, Broker, free_port

FPS = 10
HISTORY_ONLY = {"clip_start", "clip_end"}  # the recording index's facts, known once the clip is indexed


async def read_sse(http: aiohttp.ClientSession, url: str, got: list[dict]) -> None:
    """Every data line of the live feed, decoded, into `got` (until cancelled)."""
    async with http.get(url) as resp:
        assert resp.status == 200
        async for line in resp.content:
            if line.startswith(b"data: "):
                got.append(json.loads(line[6:]))


async def read_mqtt(port: int, got: list[dict], ready: asyncio.Event) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe("camserver/events")
        ready.set()
        async for m in client.messages:
            got.append(json.loads(bytes(m.payload)))


@needs_ffmpeg
async def test_every_consumer_gets_the_same_event_record(http, tmp_path):
    """new and end of one event: SSE, webhook and MQTT messages are equal; the end's record (with clip
    and reasons) is what /api/events and /api/events/{id} give, but for the index's clip_start/clip_end."""
    hooked: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        hooked.append(await request.json())
        return web.Response()

    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(receiver(hook))
        tables: dict = {"events": {"max_disappeared_s": 0.5},
                        "record": {"mode": "events", "pre_capture_s": 1, "post_capture_s": 1},
                        "webhooks": [{"url": url, "types": ["new", "update", "end"]}]}
        mqtt: list[dict] = []
        tasks: list[asyncio.Task] = []
        if MOSQUITTO is not None:
            broker = Broker(tmp_path, free_port())
            await broker.start()
            stack.callback(broker.kill)
            tables["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(read_mqtt(broker.port, mqtt, ready)))
            await asyncio.wait_for(ready.wait(), 10)
        server = await stack.enter_async_context(
            CamServer(make_config(**tables), detector_factory=lambda: ScriptedDetector(person_between(10, 30))))
        base = f"http://127.0.0.1:{server.http_port}"
        live: list[dict] = []
        tasks.append(asyncio.create_task(read_sse(http, f"{base}/api/events/stream", live)))
        try:
            cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
            started = time.monotonic()
            for seq in range(1, 61):  # a person from 1 s to 3 s
                await cam.send(tagged_jpeg(0, seq))
                await asyncio.sleep(max(0.0, started + seq / FPS - time.monotonic()))

            def ended(messages: list[dict]) -> bool:
                return any(m["type"] == "end" for m in messages)

            await wait_for(lambda: ended(live) and ended(hooked) and (MOSQUITTO is None or ended(mqtt)),
                           timeout=20, what="the end on every consumer")
            end = next(m for m in live if m["type"] == "end")
            event_id = end["after"]["id"]
            async with asyncio.timeout(20):  # the clip is final once its post-capture is recorded
                while (clip := await server.recorder.clip_file(event_id)) is None or clip.in_progress:
                    await asyncio.sleep(0.2)
            async with http.get(f"{base}/api/events") as resp:
                listed = (await resp.json())["events"]
            async with http.get(f"{base}/api/events/{event_id}") as resp:
                one = await resp.json()
            await cam.close()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    for kind in ("new", "end"):
        feed = next(m for m in live if m["type"] == kind)
        assert next(m for m in hooked if m["type"] == kind) == feed, kind
        if MOSQUITTO is not None:
            assert next(m for m in mqtt if m["type"] == kind) == feed, kind
        assert set(feed) == {"type", "before", "after", "reasons"}
    after = end["after"]
    assert after["clip"] == f"/api/events/{event_id}/clip.mp4" and after["has_clip"] is True
    assert [e for e in listed if e["id"] == event_id] == [one]
    assert set(one) - set(after) == HISTORY_ONLY, (set(one) ^ set(after))
    assert {k: v for k, v in one.items() if k not in HISTORY_ONLY} == after
