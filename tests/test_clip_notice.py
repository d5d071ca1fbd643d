"""The notification with an event's clip goes out as soon as the recording index finishes the clip:
the sender waits on the index's notice (record/clipwait.py), it does not ask every half second."""

from __future__ import annotations

import asyncio
import time

from camserver.app import CamServer
from conftest import ScriptedDetector, connect_camera, make_config, person_between, tagged_jpeg, wait_for
from fake_ntfy import fake_ntfy
from recordkit import needs_ffmpeg

FPS = 10
WITHIN_S = 0.2  # the 0.5 s poll it replaces took 0.25 s on average, up to 0.5 s


@needs_ffmpeg
async def test_the_clip_notification_follows_the_finished_clip_at_once():
    """Two events, one after the other: each one's clip message reaches the phone within 0.2 s of the
    recording index finishing its clip."""
    async with fake_ntfy() as fake:
        config = make_config(events={"max_disappeared_s": 0.5},
                             record={"mode": "events", "pre_capture_s": 1, "post_capture_s": 1},
                             notify=[{"urls": [f"ntfy://{fake.url}/phone"], "clip": True, "cooldown_s": 0}])
        script = person_between(10, 25)
        async with CamServer(config, detector_factory=lambda: ScriptedDetector(
                lambda cam, seq: script(cam, seq % 60))) as server:
            for target in server.notifier.targets:
                target.plugin.request_rate_per_sec = 0  # Apprise paces ntfy at one message per 5.5 s
            index = server.recorder.index
            finished: list[float] = []
            grew = index.grew

            def spy() -> None:  # on the database thread, right after the recording's row is final
                finished.append(time.monotonic())
                grew()

            index.grew = spy
            cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
            started = time.monotonic()
            for seq in range(1, 121):  # a person from 1 s to 2.5 s, and again from 7 s to 8.5 s
                await cam.send(tagged_jpeg(0, seq))
                await asyncio.sleep(max(0.0, started + seq / FPS - time.monotonic()))

            def clips() -> list[float]:
                titles = {r.at: r.title for r in fake.received}
                return sorted(at for at, title in titles.items() if title.endswith("the clip"))

            await wait_for(lambda: len(clips()) >= 2, timeout=30, what="two clip notifications")
            await cam.close()
    delays = []
    for sent in clips():
        before = [t for t in finished if t <= sent]
        assert before, "a clip message before any clip was finished"
        delays.append(sent - before[-1])
    assert max(delays) < WITHIN_S, delays
