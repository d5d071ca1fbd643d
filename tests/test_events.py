"""Events through the real server: a scripted detector, the real BYTETracker, the store, the API and the SSE feed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Callable

import aiohttp

from camserver.app import CamServer
from camserver.config import from_mapping
from camserver.detect import Detection
from camserver.events.rules import CameraRules
from camserver.events.store import EventStore
from camserver.events.tracker import CameraTracker
from camserver.storage import Database
from conftest import WAIT_S, Script, ScriptedDetector, connect_camera, decode, make_config, tagged_jpeg, wait_for

W, H = 320, 240


class FakeClock:
    """Wall-clock time the test sets: frames and rules see it, nothing else moves it."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def events_server(script: Script, clock: Callable[[], float] = time.time, **events):
    """A server with the scripted detector and [events] overrides; yields (server, base URL)."""
    config = make_config(events={"max_disappeared_s": 0.5, **events})
    server = CamServer(config, detector_factory=lambda: ScriptedDetector(script), clock=clock)
    async with server:
        yield server, f"http://127.0.0.1:{server.http_port}"


class SseReader:
    """Reads a text/event-stream response: (id, event, data) per message, comments skipped."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self, timeout: float = WAIT_S) -> tuple[str, str, dict]:
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.resp.content.readline()).decode()
                if not line:
                    raise EOFError("stream ended")
                line = line.rstrip("\n")
                if not line:
                    if "data" in fields:
                        return fields.get("id", ""), fields.get("event", "message"), json.loads(fields["data"])
                    fields = {}
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value

    async def until_end(self, count: int = 1, timeout: float = WAIT_S) -> list[tuple[str, str, dict]]:
        """Messages until `count` events have ended."""
        got, ends = [], 0
        async with asyncio.timeout(timeout):
            while ends < count:
                msg = await self.next()
                got.append(msg)
                ends += msg[1] == "end"
        return got


@contextlib.asynccontextmanager
async def sse(http: aiohttp.ClientSession, url: str, last_event_id: str | None = None):
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        yield SseReader(resp)


def walking(cam: int, seq: int):
    """Camera 0: a person walks left to right over frames 1-20, then is gone."""
    if 1 <= seq <= 20:
        x = 10 + 12 * seq
        return [("person", 0.9, (x, 60.0, x + 40, 200.0))]
    return []


PORCH = [{"camera": "door", "name": "porch", "points": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}]


async def send_frames(cam, seqs, fps: float = 20):
    for seq in seqs:
        await cam.send(tagged_jpeg(0, seq, W, H))
        await asyncio.sleep(1 / fps)


async def test_person_crossing_gives_one_event_new_updates_end(http):
    """A person crossing the frame: exactly one event, new -> updates -> end, entered_zones right, stored with a snapshot."""
    async with events_server(walking, zones=PORCH) as (server, base), sse(http, f"{base}/api/events/stream") as feed:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await send_frames(cam, range(1, 41))
        messages = await feed.until_end()
        kinds = [kind for _, kind, _ in messages]
        assert kinds[0] == "new" and kinds[-1] == "end" and set(kinds[1:-1]) <= {"update"}
        assert kinds.count("new") == 1 and len(kinds) > 2
        ids = {data["after"]["id"] for _, _, data in messages}
        assert len(ids) == 1
        end = messages[-1][2]["after"]
        assert end["end_reason"] == "disappeared" and end["entered_zones"] == ["porch"] and end["current_zones"] == ["porch"]
        assert any("zones" in data["reasons"] for _, kind, data in messages if kind == "update")
        assert end["has_snapshot"] and end["label"] == "person"
        async with http.get(f"{base}/api/events?camera=door") as resp:
            listed = (await resp.json())["events"]
        assert [e["id"] for e in listed] == list(ids)
        async with http.get(f"{base}/api/events/{end['id']}/snapshot.jpg?crop=1&h=100") as resp:
            assert resp.status == 200 and decode(await resp.read()).shape[0] == 100
        async with http.get(f"{base}/api/events?zone=porch&has_snapshot=1") as resp:
            assert len((await resp.json())["events"]) == 1
        async with http.get(f"{base}/api/events?zone=yard") as resp:
            assert (await resp.json())["events"] == []
        await cam.close()


async def test_flicker_never_becomes_an_event():
    """A low-score object that flickers (0.6 every other frame) never reaches the threshold: no event."""

    def flicker(cam, seq):
        return [("person", 0.6, (50.0, 50.0, 100.0, 200.0))] if seq % 2 else []

    async with events_server(flicker) as (server, base):
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/c")
        await send_frames(cam, range(1, 41))
        camera = server.hub.get("c")
        await wait_for(lambda: camera.frames_processed + camera.frames_dropped >= 40)
        await wait_for(lambda: server.events.idle)
        assert server.events.events_total == 0
        await cam.close()


async def test_two_people_two_events(http):
    """Two people at once give two events with different ids."""

    def two(cam, seq):
        if seq > 20:
            return []
        return [("person", 0.9, (20.0 + seq, 40.0, 70.0 + seq, 200.0)), ("person", 0.85, (200.0, 40.0, 250.0, 200.0))]

    async with events_server(two) as (server, base), sse(http, f"{base}/api/events/stream") as feed:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/c")
        await send_frames(cam, range(1, 35))
        messages = await feed.until_end(2)
        new_ids = [data["after"]["id"] for _, kind, data in messages if kind == "new"]
        assert len(new_ids) == 2 and len(set(new_ids)) == 2
        await cam.close()


async def test_stationary_object_gets_only_heartbeats(http):
    """3 minutes of frames of a person standing still: one event, 'stationary' once, then only heartbeats."""
    clock = FakeClock()

    def still(cam, seq):
        return [("person", 0.9, (100.0, 40.0, 150.0, 200.0))]

    async with events_server(still, clock, stationary_s=10, update_interval_s=60, max_disappeared_s=5) as (server, base), sse(
        http, f"{base}/api/events/stream"
    ) as feed:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/c")
        camera = server.hub.get("c")
        for seq in range(1, 182):  # one frame per (fake) second
            clock.now += 1.0
            await cam.send(tagged_jpeg(0, seq, W, H))
            await wait_for(lambda: camera.frames_processed == seq, what=f"frame {seq}")
        await wait_for(lambda: server.events.idle)
        await cam.close()  # the camera goes offline: its event ends
        messages = await feed.until_end()
    kinds = [(kind, tuple(data["reasons"])) for _, kind, data in messages]
    assert kinds[0][0] == "new" and kinds[-1][0] == "end"
    updates = [reasons for kind, reasons in kinds if kind == "update"]
    assert updates[0] == ("stationary",)
    assert updates[1:] == [("heartbeat",)] * 2, updates  # at +60 s and +120 s of standing still
    assert messages[-1][2]["after"]["end_reason"] == "camera offline"


async def test_sse_resumes_after_last_event_id(http):
    """A client that reconnects with Last-Event-ID gets exactly what it missed."""
    async with events_server(walking) as (server, base):
        async with sse(http, f"{base}/api/events/stream") as feed:
            cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/c")
            await send_frames(cam, range(1, 6))
            first = await feed.next()
            assert first[1] == "new"
        await send_frames(cam, range(6, 41))  # meanwhile: updates and the end
        await wait_for(lambda: server.events.feed.items[-1].type == "end", what="event ended")
        async with sse(http, f"{base}/api/events/stream", last_event_id=first[0]) as again:
            missed = await again.until_end()
        ids = [int(i.split(".")[1]) for i, _, _ in missed]
        assert ids == list(range(int(first[0].split(".")[1]) + 1, ids[-1] + 1))
        await cam.close()


async def test_non_reading_sse_client_dropped_others_keep_receiving(http):
    """An SSE client that never reads is dropped after the write timeout; a reading client gets every change."""
    import socket

    config = make_config(events={"max_disappeared_s": 0.3}, http={"viewer_write_timeout_s": 1.0})

    def many(cam, seq):  # a new short event every 10 frames, with big snapshots of noise in the feed's JSON
        return [("person", 0.9, (10.0 + seq % 10 * 20, 40.0, 60.0 + seq % 10 * 20, 200.0))] if seq % 10 < 6 else []

    server = CamServer(config, detector_factory=lambda: ScriptedDetector(many))
    async with server:
        base = f"http://127.0.0.1:{server.http_port}"
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", server.http_port))
        stuck.sendall(b"GET /api/events/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        async with sse(http, f"{base}/api/events/stream") as feed:
            cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/c")
            got = []
            sender = asyncio.create_task(send_frames(cam, range(1, 400), fps=40))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(8):
                    while True:
                        got.append(await feed.next())
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await cam.close()
        ids = [int(i.split(".")[1]) for i, _, _ in got]
        assert ids == list(range(1, len(ids) + 1)) and len(ids) > 10  # nothing missed
        stuck.settimeout(WAIT_S)
        with contextlib.suppress(ConnectionResetError):
            while stuck.recv(65536):  # what was queued before the server gave up, then the reset
                pass
        stuck.close()


def test_tracker_ids_stable_along_a_path_and_per_camera():
    """BYTETracker wrapper: one id along a moving path; two cameras keep separate tracks."""
    a, b = CameraTracker(5.0), CameraTracker(5.0)
    ids_a, ids_b = set(), set()
    for i in range(30):
        det_a = [Detection(0, "person", 0.9, (10.0 + 5 * i, 50.0, 60.0 + 5 * i, 200.0))]
        det_b = [Detection(0, "person", 0.9, (250.0 - 5 * i, 50.0, 300.0 - 5 * i, 200.0)),
                 Detection(2, "car", 0.8, (20.0, 150.0, 120.0, 220.0))]
        ids_a |= {t.track_id for t in a.update(det_a, (W, H))}
        tb = b.update(det_b, (W, H))
        ids_b.add(tuple(sorted((t.label, t.track_id) for t in tb)))
    assert len(ids_a) == 1
    assert len(ids_b) == 1 and len(next(iter(ids_b))) == 2
    # events are keyed by camera: the same track id on two cameras gives two events
    config = from_mapping({"events": {"threshold": 0.5}}).events
    ra, rb = CameraRules("a", config), CameraRules("b", config)
    dets = [Detection(0, "person", 0.9, (10.0, 50.0, 60.0, 200.0))]
    new = [c.after for r in (ra, rb) for n in range(3) for c in r.on_frame(100.0 + n, b"", (W, H), dets)]
    assert len(new) == 2 and new[0]["id"] != new[1]["id"] and {e["camera"] for e in new} == {"a", "b"}


async def test_retention_removes_oldest_by_age_and_by_size(tmp_path):
    """The budget deletes events past retain_days, then the oldest until under max_mb; snapshots go with them."""
    now = 1_800_000_000.0
    base = {"camera": "c", "label": "person", "entered_zones": [], "end_reason": "disappeared", "has_snapshot": True}

    async def filled(folder, retain_days, max_mb):
        database = Database(tmp_path / folder, max_mb, clock=lambda: now, monotonic=lambda: 0.0)  # time stands still
        await database.open()
        store = EventStore(tmp_path / folder, retain_days)
        budget = database.budget
        await database.use(store.open, now)
        budget.add(store)
        for i in range(6):
            start = now - 3 * 86400 + i * 86400 / 2  # 3 days ago, 2.5, ... 0.5 days ago
            record = {**base, "id": f"e{i}", "start_time": start, "end_time": start + 10}
            await database.run(store.save, record, b"\xff\xd8" + bytes(300 * 1024) + b"\xff\xd9", start)
        assert not await budget.round()
        return database, store, budget

    database, by_age, budget = await filled("age", retain_days=1, max_mb=100)
    assert budget.removed == {"events": 4}
    assert [e["id"] for e in by_age.query({}, 100, None)] == ["e5", "e4"]
    assert sorted(p.stem for p in by_age.snapshots.glob("*.jpg")) == ["e4", "e5"]
    await database.close()

    database, by_size, budget = await filled("size", retain_days=100, max_mb=1)
    assert budget.removed == {"events": 3}
    assert [e["id"] for e in by_size.query({}, 100, None)] == ["e5", "e4", "e3"]
    assert (await database.run(budget.measure)).total <= 1024 * 1024
    assert sorted(p.stem for p in by_size.snapshots.glob("*.jpg")) == ["e3", "e4", "e5"]
    await database.close()


async def test_delete_and_viewer_auth_on_events(http):
    """DELETE removes an event and its snapshot; without the viewer token /api/events answers 401."""
    token = "events-token-123"
    config = make_config(events={"max_disappeared_s": 0.5}, http={"token": token})
    server = CamServer(config, detector_factory=lambda: ScriptedDetector(walking))
    async with server:
        base, auth = f"http://127.0.0.1:{server.http_port}", {"Authorization": f"Bearer {token}"}
        for path in ("/api/events", "/api/events/stream", "/api/events/x/snapshot.jpg"):
            async with http.get(base + path) as resp:
                assert resp.status == 401, path
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await send_frames(cam, range(1, 41))
        await wait_for(lambda: server.events.events_total == 1 and server.events.idle, what="one event")
        async with http.get(f"{base}/api/events", headers=auth) as resp:
            (event,) = (await resp.json())["events"]
        snapshot = server.events.store.snapshot_path(event["id"])
        await wait_for(lambda: snapshot.exists(), what="snapshot stored")
        async with http.delete(f"{base}/api/events/{event['id']}", headers=auth) as resp:
            assert resp.status == 200
        async with http.get(f"{base}/api/events/{event['id']}", headers=auth) as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "unknown event"
        assert not snapshot.exists()
        async with http.get(f"{base}/api/events?limit=0", headers=auth) as resp:
            assert resp.status == 400
        await cam.close()


async def test_storage_write_failure_is_counted_and_events_go_on(http):
    """The storage folder removed while running: failures are counted and shown in /healthz; the live feed goes on."""
    import shutil

    async with events_server(walking) as (server, base), sse(http, f"{base}/api/events/stream") as feed:
        shutil.rmtree(server.events.store.directory)
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await send_frames(cam, range(1, 41))
        messages = await feed.until_end()
        assert messages[0][1] == "new" and messages[-1][1] == "end"
        await wait_for(lambda: server.events.idle)
        async with http.get(f"{base}/healthz") as resp:
            health = await resp.json()
        assert resp.status == 200 and health["events"]["storage_write_errors"] >= 1
        camera = server.hub.get("door")
        assert camera.frames_processed + camera.frames_dropped == 40
        await cam.close()
