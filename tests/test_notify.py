"""Notifications through Apprise against a fake ntfy server: config, redaction, when a message
goes, what it carries, retries, timeouts, queues, and a target that hangs."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import numpy as np
import pytest

from camserver.config import ConfigError, from_mapping
from camserver.events.rules import Change
from camserver.integrations import notify as notify_module
from camserver.integrations.notify import Notifier
from camserver.config.apprise_urls import redact, scrub
from camserver.supervise import Supervisor
from conftest import decode, make_jpeg
from fake_ntfy import FakeNtfy, fake_ntfy

SECRETS = ("pw-Secret7", "door-Secret1", "other-Secret2")


def notifier(fake: FakeNtfy, *groups: dict, public_url: str = "", **kwargs) -> Notifier:
    """A Notifier for [[notify]] tables whose URLs may say {url} for the fake server's host:port."""
    tables = [dict(g, urls=[u.format(url=fake.url) for u in g["urls"]]) for g in groups]
    porch = {"camera": "door", "name": "porch", "points": [[0, 0], [1, 0], [1, 1]]}
    config = from_mapping({"notify": tables, "http": {"public_url": public_url} if public_url else {},
                           "events": {"zones": [porch]}})
    n = Notifier(config.notify, config.http.public_url, **kwargs)
    for target in n.targets:
        target.plugin.request_rate_per_sec = 0  # Apprise paces ntfy at one message per 5.5 s
    return n


def event(event_id: str = "1700000000000-abc123", camera: str = "door", label: str = "person", **fields) -> dict:
    """An event record as the engine announces it."""
    return {"id": event_id, "camera": camera, "label": label, "score": 0.9, "top_score": 0.9,
            "box": [60.0, 40.0, 180.0, 200.0], "start_time": 1700000000.0, "end_time": None, "end_reason": None,
            "stationary": False, "current_zones": [], "entered_zones": [], "has_snapshot": True,
            "snapshot_box": [60.0, 40.0, 180.0, 200.0], "snapshot_score": 0.9, "announced": True} | fields


def new(record: dict, frame: bytes | None = None) -> Change:
    return Change("new", None, record, snapshot=frame if frame is not None else make_jpeg(3))


def ended(record: dict) -> Change:
    return Change("end", record, record | {"end_time": record["start_time"] + 12, "end_reason": "disappeared"})


class Clock:
    """A settable monotonic clock for cooldowns."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- configuration and redaction --------------------------------------------------------------


@pytest.mark.parametrize("url, words", [
    ("foo://tok-Secret9/abc", "unknown scheme foo://"),
    ("tok-Secret9", "is not a URL"),
    ("tgram://tok-Secret9/123", "cannot use this tgram:// URL"),
    ("pover://tok-Secret9", "cannot use this pover:// URL"),
])
def test_bad_urls_are_a_config_error_naming_the_table_without_the_secret(url, words):
    """An unknown scheme or an unusable URL: ConfigError naming notify[i].urls; no part of the secret shows."""
    with pytest.raises(ConfigError) as info:
        from_mapping({"notify": [{"urls": ["ntfy://127.0.0.1:9/fine"]}, {"urls": ["ntfys://ntfy.sh/ok", url]}]})
    assert info.value.key == "notify[1].urls"
    assert words in str(info.value) and "URL 2" in str(info.value)
    assert "Secret9" not in str(info.value) and "Secret9" not in repr(info.value.value)


@pytest.mark.parametrize("table, key, words", [
    ({}, "notify[0].urls", "non-empty list"),
    ({"urls": "ntfy://host/top-Secret9"}, "notify[0].urls", "non-empty list"),
    ({"urls": ["ntfy://h/t"], "attach": "video"}, "notify[0].attach", "snapshot, crop, none"),
    ({"urls": ["ntfy://h/t"], "zones": ["garden"]}, "notify[0].zones", "no [[events.zones]] is named 'garden'"),
    ({"urls": ["ntfy://h/t"], "cooldown_s": -1}, "notify[0].cooldown_s", "from 0.0 to 86400"),
    ({"urls": ["ntfy://h/t"], "colour": "red"}, "notify[0].colour", "unknown key"),
])
def test_bad_notify_tables(table, key, words):
    """Every bad [[notify]] value is one ConfigError naming its dotted key; a URL in it shows redacted."""
    with pytest.raises(ConfigError) as info:
        from_mapping({"notify": [table]})
    assert info.value.key == key and words in str(info.value), str(info.value)
    assert "Secret9" not in str(info.value)


def test_notify_config_loads_and_hides_its_urls_from_repr():
    """A good table loads with its defaults; public_url must be http(s); repr(config) shows no URL."""
    config = from_mapping({"notify": [{"urls": ["tgram://123456789:AAtok-Secret9/987654"], "labels": ["person"]}],
                           "http": {"public_url": "https://cams.example.org"}})
    (group,) = config.notify
    assert (group.cooldown_s, group.attach, group.clip, group.zones) == (60.0, "snapshot", False, ())
    assert config.http.public_url == "https://cams.example.org"
    assert "Secret9" not in repr(config)
    with pytest.raises(ConfigError) as info:
        from_mapping({"http": {"public_url": "cams.example.org"}})
    assert info.value.key == "http.public_url"


def test_redact_shows_scheme_and_host_only():
    """Redaction keeps a public host (and port), hides topics, users, passwords, and hosts that are tokens."""
    assert redact("ntfys://ntfy.sh/my-door-4f9a") == "ntfys://ntfy.sh"
    assert redact("ntfy://user:pw-Secret7@127.0.0.1:8080/door-Secret1") == "ntfy://127.0.0.1:8080"
    assert redact("tgram://123456789:AAtok-Secret9/987654") == "tgram://***"
    assert redact("pover://userkey-Secret@apptoken-Secret") == "pover://***"
    assert redact("not a url") == "(not a URL)"
    line = "POST /bot123456789:AAtok-Secret9/sendPhoto chat 987654 to /door-Secret1 as user:pw-Secret7"
    assert "Secret" not in scrub(line) and "987654" not in scrub(line)


# --- when a message goes, and what it carries -------------------------------------------------------


async def test_new_event_sends_title_time_zones_link_and_the_picture_with_its_box():
    """On `new`: title "Person at door", local time, zones and the event link; the attachment is the
    event's frame with its box drawn (raw JPEG body, title and message as query parameters)."""
    async with fake_ntfy() as fake:
        n = notifier(fake, {"urls": ["ntfy://user:pw-Secret7@{url}/door-Secret1"]}, public_url="http://cams.example/")
        await n.start(Supervisor().spawn)
        frame = make_jpeg(3, 320, 240)
        record = event(entered_zones=["porch"])
        n.on_change(new(record, frame))
        await fake.wait(lambda: len(fake.received) == 1)
        await n.stop()
    (msg,) = fake.received
    assert msg.topic == "door-Secret1" and msg.title == "Person at door"
    assert msg.authorization and msg.authorization.startswith("Basic ")
    stamp = notify_module.local_time(record["start_time"])
    assert msg.message == f"At {stamp}, in porch.\nhttp://cams.example/#/events/{record['id']}"
    assert msg.filename == f"{record['id']}.jpg"
    picture, raw = decode(msg.attachment), decode(frame)
    assert picture.shape == raw.shape
    assert np.abs(picture.astype(int) - raw.astype(int)).max() > 100  # the box is drawn on it
    assert n.targets[0].sent == 1 and n.health()[0] == {
        "target": "notify[0].urls[0]", "url": f"ntfy://{fake.url}", "sent": 1, "failed": 0, "dropped": 0, "queued": 0}


async def test_crop_none_and_a_picture_from_the_store():
    """attach = crop sends the object's surroundings, none sends text only; without the change's frame
    the snapshot callable (the event store) gives it."""
    asked = []

    def snapshot(event_id):
        asked.append(event_id)
        return make_jpeg(9, 320, 240)

    async with fake_ntfy() as fake:
        n = notifier(fake, {"urls": ["ntfy://{url}/crop"], "attach": "crop"},
                     {"urls": ["ntfy://{url}/none"], "attach": "none"}, snapshot=snapshot)
        await n.start(Supervisor().spawn)
        record = event()
        n.on_change(Change("new", None, record, snapshot=None))
        await fake.wait(lambda: len(fake.received) == 2)
        await n.stop()
    (crop,), (text,) = fake.on("crop"), fake.on("none")
    assert decode(crop.attachment).shape[:2] == (240, 180)  # the 120x160 box plus a quarter each side, in 320x240
    assert text.attachment is None and text.title == "Person at door" and "application/json" in text.content_type
    assert asked == [record["id"]]


async def test_filters_announced_and_cooldown_per_camera_and_label():
    """Cameras and labels filter; an event held back by events.cooldown_s never notifies; one message
    per camera and label per cooldown_s; another label or camera has its own."""
    clock = Clock()
    async with fake_ntfy() as fake:
        n = notifier(fake, {"urls": ["ntfy://{url}/t"], "cameras": ["door", "yard"], "labels": ["person", "car"],
                            "cooldown_s": 60}, clock=clock)
        await n.start(Supervisor().spawn)
        n.on_change(new(event("1", camera="garage")))
        n.on_change(new(event("2", label="dog")))
        n.on_change(new(event("3", announced=False)))
        n.on_change(new(event("4")))  # sent
        clock.now += 59
        n.on_change(new(event("5")))  # inside the cooldown
        n.on_change(new(event("6", label="car")))  # sent: another label
        n.on_change(new(event("7", camera="yard")))  # sent: another camera
        clock.now += 2
        n.on_change(new(event("8")))  # sent: 61 s after 4
        await fake.wait(lambda: len(fake.received) == 4)
        await n.stop()
    assert [m.filename for m in fake.received] == ["4.jpg", "6.jpg", "7.jpg", "8.jpg"]


async def test_zones_notify_once_when_the_object_enters_one_even_after_new():
    """With zones: nothing while the object is outside them, one message on the update where it
    enters one, none after; a group without zones notifies on `new` only, never on updates."""
    async with fake_ntfy() as fake:
        n = notifier(fake, {"urls": ["ntfy://{url}/porch"], "zones": ["porch"], "cooldown_s": 0},
                     {"urls": ["ntfy://{url}/any"], "cooldown_s": 0})
        await n.start(Supervisor().spawn)
        record = event()
        n.on_change(new(record))
        await fake.wait(lambda: len(fake.on("any")) == 1)
        assert fake.on("porch") == []
        inside = record | {"current_zones": ["porch"], "entered_zones": ["porch"]}
        n.on_change(Change("update", record, inside, ["zones"]))
        n.on_change(Change("update", inside, inside | {"current_zones": []}, ["zones"]))
        n.on_change(Change("update", inside, inside | {"current_zones": ["porch"]}, ["zones"]))
        await fake.wait(lambda: len(fake.on("porch")) == 1)
        n.on_change(ended(inside))
        await n.stop()
    assert len(fake.on("porch")) == 1 and len(fake.on("any")) == 1
    assert "in porch" in fake.on("porch")[0].message


async def test_clip_on_end_attached_or_noted(tmp_path):
    """clip = true: when the event ends, a second message with the clip file; over 8 MB, or to a service
    that takes no attachments (Gotify), a note instead; no clip recorded, no second message."""
    clip = tmp_path / "small.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(1000))
    big = tmp_path / "big.mp4"
    with open(big, "wb") as fh:
        fh.truncate(9 * 1024 * 1024)
    clips = {"small": clip, "big": big}
    async with fake_ntfy() as fake:
        n = notifier(fake, {"urls": ["ntfy://{url}/phone", "gotify://{url}/AppTokenX"], "clip": True, "cooldown_s": 0},
                     clip_path=lambda event_id: clips.get(event_id))
        await n.start(Supervisor().spawn)
        for event_id in ("small", "big", "none"):
            record = event(event_id)
            n.on_change(new(record))
            n.on_change(ended(record))
        await fake.wait(lambda: len(fake.on("phone")) == 5 and len(fake.on("gotify:AppTokenX")) == 5)
        await n.stop()
    phone = {m.title: m for m in fake.on("phone")}
    assert [m.title for m in fake.on("phone")].count("Person at door: the clip") == 2
    small, large = [m for m in fake.on("phone") if m.title.endswith("the clip")]
    assert small.attachment == clip.read_bytes() and small.filename == "small.mp4"
    assert large.attachment is None and "9.4 MB, is over the 8 MB" in large.message
    gotify_clips = [m for m in fake.on("gotify:AppTokenX") if m.title.endswith("the clip")]
    assert len(gotify_clips) == 2 and all("cannot take attachments" in m.message for m in gotify_clips)
    assert "Person at door" in phone


# --- never in the way ---------------------------------------------------------------------------


async def test_a_500_is_retried_and_delivered_once():
    """A target that answers 500 once gets the message on the retry: sent 1, failed 0."""
    async with fake_ntfy() as fake:
        fake.fail["t"] = [500]
        n = notifier(fake, {"urls": ["ntfy://{url}/t"]}, retry_delays_s=(0.05, 0.05, 0.05))
        await n.start(Supervisor().spawn)
        n.on_change(new(event()))
        await fake.wait(lambda: len(fake.received) == 1)
        await n.stop()
    assert [t for t, _ in fake.requests] == ["t", "t"]
    assert (n.targets[0].sent, n.targets[0].failed) == (1, 0)


async def test_a_dead_target_fails_after_3_retries_and_says_so_without_its_secret(caplog):
    """Nothing listening: 4 attempts, then failed = 1 and one warning naming the redacted URL only."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: connections are refused
    caplog.set_level(logging.DEBUG)
    fake = FakeNtfy()
    fake.url = f"127.0.0.1:{port}"
    n = notifier(fake, {"urls": ["ntfy://user:pw-Secret7@{url}/door-Secret1"]}, retry_delays_s=(0.01, 0.01, 0.01))
    await n.start(Supervisor().spawn)
    n.on_change(new(event()))
    async with asyncio.timeout(30):
        while n.targets[0].failed == 0:
            await asyncio.sleep(0.02)
    await n.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"ntfy://127.0.0.1:{port} (notify[0].urls[0]) failed after 3 retries" in w for w in warnings), warnings
    assert not any(s in caplog.text for s in SECRETS)


async def test_an_attempt_past_its_timeout_is_not_sent_twice(monkeypatch):
    """An attempt that outlives the send timeout but then gets through counts as sent: the retry
    waits for it instead of sending a duplicate."""
    monkeypatch.setattr(notify_module, "TIMEOUT_S", 0.6)
    async with fake_ntfy() as fake:
        fake.hang, fake.hang_s = {"slow"}, 0.8  # past the 0.6 s timeout, well inside the wait for it
        n = notifier(fake, {"urls": ["ntfy://{url}/slow"]}, retry_delays_s=(0.05,))
        await n.start(Supervisor().spawn)
        n.on_change(new(event()))
        async with asyncio.timeout(10):
            while n.targets[0].sent + n.targets[0].failed == 0:
                await asyncio.sleep(0.02)
        await n.stop()
    assert len(fake.requests) == 1 and len(fake.received) == 1
    assert (n.targets[0].sent, n.targets[0].failed) == (1, 0)


async def test_a_hanging_target_delays_neither_the_loop_nor_the_other_target():
    """One URL of a group hangs 30 s: the other URL gets every message at once, the loop stays free,
    and the hanging target's full queue drops its oldest messages (counted); stop does not wait for it."""
    lags = []

    async def ticker() -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - t0 - 0.01)

    async with fake_ntfy() as fake:
        fake.hang = {"stuck"}
        n = notifier(fake, {"urls": ["ntfy://{url}/stuck", "ntfy://{url}/fine"], "cooldown_s": 0})
        await n.start(Supervisor().spawn)
        tick = asyncio.create_task(ticker())  # from here: building the Notifier imports Apprise (start-up)
        started = time.monotonic()
        n.on_change(new(event("first")))
        await fake.wait(lambda: len(fake.on("fine")) == 1, timeout=2)
        assert time.monotonic() - started < 1.0
        await fake.wait(lambda: [t for t, _ in fake.requests].count("stuck") == 1, what="the stuck target's request")
        total = notify_module.QUEUE + 6
        for i in range(1, total):
            n.on_change(new(event(f"e{i}")))
            await fake.wait(lambda: len(fake.on("fine")) == i + 1, timeout=2)
        stuck, fine = n.targets
        await fake.wait(lambda: fine.sent == total, what="the last answer")
        assert (stuck.sent, stuck.failed, len(stuck.outbox), stuck.outbox.dropped) == (0, 0, notify_module.QUEUE, 5)
        assert (fine.sent, fine.failed, fine.outbox.dropped) == (total, 0, 0)
        assert max(lags) < 0.5, max(lags)  # never blocked by the hung send (4 s read timeout); 2 busy shared cores
        t0 = time.monotonic()
        await n.stop(grace_s=0.3)
        assert time.monotonic() - t0 < 1.0
    tick.cancel()


async def test_stop_delivers_what_is_queued_within_the_grace():
    """Messages queued just before shutdown (events ended by the stop) still go out."""
    async with fake_ntfy() as fake:
        n = notifier(fake, {"urls": ["ntfy://{url}/t"], "cooldown_s": 0})
        await n.start(Supervisor().spawn)
        for i in range(3):
            n.on_change(new(event(f"s{i}")))
        await n.stop(grace_s=5)
        assert len(fake.received) == 3
