"""Deleting events through the API: one still open ends for good, the live feed tells pages."""

from __future__ import annotations

import asyncio

import pytest

from camserver.events.rules import Change
from conftest import connect_camera, wait_for
from test_events import events_server, send_frames, sse


def lingering(cam: int, seq: int):
    """A person walks in over frames 1-40 (two seconds at 20 fps), then is gone."""
    if 1 <= seq <= 40:
        x = 10 + 5 * seq
        return [("person", 0.9, (x, 60.0, x + 40, 200.0))]
    return []


async def test_deleting_an_open_event_sticks(http):
    """DELETE of an event in progress: its snapshot and row go, the feed says `delete`, listeners get an `end`
    (end_reason "deleted", not stored); the object staying in view starts no new event, and leaving brings none back."""
    async with events_server(lingering) as (server, base), sse(http, f"{base}/api/events/stream") as feed:
        heard: list[Change] = []
        server.events.listeners.append(heard.append)
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await send_frames(cam, range(1, 9))
        _, kind, data = await feed.next()
        assert kind == "new"
        event_id = data["after"]["id"]
        snapshot = server.events.store.snapshot_path(event_id)
        await wait_for(snapshot.exists, what="snapshot stored")
        async with http.delete(f"{base}/api/events/{event_id}") as resp:
            assert resp.status == 200 and (await resp.json()) == {"deleted": event_id}
        await send_frames(cam, range(9, 61))  # still in view for 1.6 s, then gone for 1 s
        rules = server.events.rules["door"]
        await wait_for(lambda: not rules.objects and server.events.idle, what="the object forgotten")
        async with http.get(f"{base}/api/events/{event_id}") as resp:
            assert resp.status == 404  # it did not come back when the object left
        async with http.get(f"{base}/api/events") as resp:
            assert (await resp.json())["events"] == []
        assert not snapshot.exists()
        assert server.events.events_total == 1  # no new event for the same object
        while kind != "delete":
            _, kind, data = await feed.next()
        assert data == {"type": "delete", "id": event_id, "camera": "door"}
        ends = [c for c in heard if c.type == "end"]
        assert len(ends) == 1 and ends[0].after["id"] == event_id and ends[0].after["end_reason"] == "deleted"
        assert [i.type for i in server.events.feed.items if i.data.get("after", i.data).get("id") == event_id][-1] == "delete"
        assert "end" not in [i.type for i in server.events.feed.items]
        async with http.delete(f"{base}/api/events/{event_id}") as resp:
            assert resp.status == 404
        await cam.close()


async def test_deleting_an_ended_event_tells_the_feed(http):
    """An ended event deleted: the feed sends `delete` with its id, listeners hear nothing more."""
    async with events_server(lingering) as (server, base), sse(http, f"{base}/api/events/stream") as feed:
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await send_frames(cam, range(1, 61))
        messages = await feed.until_end()
        event_id = messages[-1][2]["after"]["id"]
        heard: list[Change] = []
        server.events.listeners.append(heard.append)
        async with http.delete(f"{base}/api/events/{event_id}") as resp:
            assert resp.status == 200
        _, kind, data = await feed.next()
        assert (kind, data) == ("delete", {"type": "delete", "id": event_id, "camera": "door"})
        await asyncio.sleep(0)
        assert heard == []
        await cam.close()


async def test_an_open_page_drops_an_event_deleted_elsewhere(http):
    """Headless Chromium on the review page: an event deleted by another client disappears without a reload."""
    browser_module = pytest.importorskip("browser")
    if browser_module.CHROMIUM is None:
        pytest.skip("chromium not installed (.ci/run installs it)")
    async with events_server(lingering) as (server, base):
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        await send_frames(cam, range(1, 61))
        await wait_for(lambda: server.events.feed.items and server.events.feed.items[-1].type == "end", what="an event")
        event_id = server.events.feed.items[-1].data["after"]["id"]
        card = f"document.querySelector('.event-card[data-id=\"{event_id}\"]')"
        async with browser_module.chromium(f"{base}/#/review") as browser:
            await browser.wait(f"!!{card}", what="the event's card")
            async with http.delete(f"{base}/api/events/{event_id}") as resp:
                assert resp.status == 200
            await browser.wait(f"!{card}", what="the card gone")
        await cam.close()


def test_a_deleted_objects_new_track_on_its_path_starts_no_event():
    """Rules: after forget(), the object's track lost for 1 s and back as a new id where it was heading makes no new
    event (the deletion passes on like an event would); a person elsewhere still gets one."""
    from camserver.events.rules import CameraRules
    from test_events_objects import FPS, T0, H, W, ScriptedTracker, events_config, person

    rules = CameraRules("c", events_config(), tracker=ScriptedTracker)
    frame = 0

    def run(script):
        nonlocal frame
        changes = []
        for detections in script:
            rules.tracker.ids = [tid for tid, _ in detections]
            changes += rules.on_frame(T0 + frame / FPS, b"", (W, H), [d for _, d in detections])
            frame += 1
        return changes

    (new,) = [c for c in run([[(1, person(10 + 10 * i))] for i in range(20)]) if c.type == "new"]
    end = rules.forget(new.after["id"], T0 + frame / FPS)
    assert end is not None and end.type == "end" and end.after["end_reason"] == "deleted"
    assert rules.forget(new.after["id"], T0 + frame / FPS) is None
    script = [[] for _ in range(10)]  # hidden for 1 s
    script += [[(7, person(10 + 10 * i))] for i in range(30, 45)]  # back as a new track, where it was heading
    assert [c.type for c in run(script)] == []
    assert rules.objects[7].deleted and rules.open_events() == []
    assert [c.type for c in run([[(7, person(450.0)), (9, person(100.0, y=300.0))]] * 5)] == ["new"]
