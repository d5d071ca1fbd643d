"""The Settings view's server side through real servers and clients: a [[notify]] rule and the recording mode
changed by PATCH /api/config take effect within 2 s without a restart, survive a restart, and the shipped
config.toml keeps every comment; POST /api/restart stops a `python -m camserver` cleanly and starts it again on
the same port with the new config, and answers 409 (restart by hand) to an in-process server, 403 to a viewer."""

from __future__ import annotations

import asyncio
import socket
import time

from camserver.config.writeback import ConfigFile
import websockets

from conftest import WAIT_S, connect_camera, feeding, make_jpeg
from serverproc import ServerProcess
from test_configapi import ADMIN, MERGE, SHIPPED, VIEWER, as_admin, comment_lines, patch, read_config, served, shipped_copy

NEW_URL = "json://127.0.0.1:9/settings-test"
SHOWN = "json://127.0.0.1:9"  # how /healthz shows it (redacted)


async def poll(http, url: str, ok, headers=None, timeout: float = WAIT_S):
    """GET `url` until `ok(json)`; returns the seconds it took."""
    began = time.monotonic()
    last = None
    while time.monotonic() - began < timeout:
        async with http.get(url, headers=headers or as_admin()) as resp:
            last = await resp.json()
            if resp.status == 200 and ok(last):
                return time.monotonic() - began
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never matched: {last}")


def door_mode(cams) -> str | None:
    return next((c["recording"]["mode"] for c in cams if c["id"] == "door"), None)


def notify_urls(health) -> list[str]:
    return [t["url"] for t in health["notify"]]


async def test_a_notify_rule_and_the_recording_mode_apply_live_and_survive_a_restart(tmp_path, http):
    """A camera records in events mode and notifies one ntfy URL; one PATCH (as the Settings view sends it) makes
    the rule a JSON URL and the mode continuous: /healthz and /api/cameras show both within 2 s, a continuous
    segment starts, no restart is asked; the server started again from the file has both; comments kept."""
    file = shipped_copy(tmp_path)
    shipped = comment_lines(SHIPPED.read_text())
    async with served(file) as (server, base):
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        try:
            async with feeding(cam, fps=10):
                await poll(http, f"{base}/api/cameras", lambda cams: door_mode(cams) == "events")
                await poll(http, f"{base}/healthz", lambda h: len(h["notify"]) == 1 and "ntfys://" in h["notify"][0]["url"])
                version = (await read_config(http, base))["version"]
                status, body = await patch(http, base, {"notify": [{"urls": [NEW_URL], "labels": ["person"]}],
                                                        "record": {"mode": "continuous"}}, version)
                assert status == 200, body
                assert sorted(body["applied_live"]) == ["notify", "record.mode"] and body["restart_needed"] == [], body
                took_mode = await poll(http, f"{base}/api/cameras", lambda cams: door_mode(cams) == "continuous")
                took_rule = await poll(http, f"{base}/healthz", lambda h: notify_urls(h) == [SHOWN])
                assert took_mode < 2.0 and took_rule < 2.0, (took_mode, took_rule)
                assert server.notifier.groups[0].config.labels == ("person",)
                await poll(http, f"{base}/api/cameras", lambda cams: any(
                    c["id"] == "door" and c["recording"]["recording"] for c in cams), timeout=WAIT_S)
        finally:
            await cam.close()
    assert comment_lines(file.path.read_text()) == shipped, "every comment of the shipped file stays"
    async with served(file) as (server, base):
        assert server.recorder.config.mode == "continuous"
        health = await read_config(http, base)
        assert health["effective"]["record"]["mode"] == "continuous"
        await poll(http, f"{base}/healthz", lambda h: notify_urls(h) == [SHOWN])


async def test_storage_budget_and_retention_apply_live_and_the_rate_is_shown(tmp_path, http):
    """storage.max_mb, storage.min_free_mb and record.retain_days are taken by the budget at once; GET /api/config
    carries the figures of "about N days at today's rate"."""
    file = shipped_copy(tmp_path)
    async with served(file) as (server, base):
        body = await read_config(http, base)
        assert set(body["storage"]) >= {"per_day_bytes", "room_bytes", "days", "max_bytes"}, body["storage"]
        status, answer = await patch(http, base, {"storage": {"max_mb": 300, "min_free_mb": 50},
                                                  "record": {"retain_days": 1.5}}, body["version"])
        assert status == 200 and answer["restart_needed"] == [], answer
        assert server.database.budget.max_bytes == 300 * 2**20 and server.database.budget.floor.min_free == 50 * 2**20
        assert server.recordings_kind.retain_days == 1.5
        assert (await read_config(http, base))["storage"]["max_bytes"] == 300 * 2**20


async def test_restart_is_refused_in_process_and_to_a_viewer(tmp_path, http):
    """An in-process server (not `python -m camserver`): 409 "restart by hand"; a viewer: 403; nothing stops."""
    file = shipped_copy(tmp_path)
    async with served(file) as (server, base):
        async with http.post(f"{base}/api/restart", headers={"Authorization": f"Bearer {VIEWER}"}) as resp:
            assert resp.status == 403, await resp.text()
        async with http.post(f"{base}/api/restart", headers=as_admin()) as resp:
            assert resp.status == 409 and "by hand" in await resp.text()
        assert not server.restart.requested.is_set() and server.ready


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def frame_answer(url: str, frame: bytes) -> int | None:
    """Send one frame from a real camera client: None when the server keeps the camera, else its close code."""
    cam = await connect_camera(url)
    try:
        await cam.send(frame)
        pong = await cam.ping()
        await asyncio.wait_for(pong, WAIT_S)  # answered after the frame was read: it was taken
        return None
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    finally:
        await cam.close()


async def restart_needed(http, base: str) -> list[str]:
    return (await read_config(http, base))["restart_needed"]


async def test_restart_now_starts_the_process_again_on_the_same_port_with_the_new_config(tmp_path, http):
    """`python -m camserver`: keys that need a restart saved (record.preset, and ingest.max_frame_bytes: 4096, seen
    through a real camera socket): before the restart a 20 kB frame is still taken and GET /api/config says both keys
    wait; POST /api/restart: 202, every stop step runs (none logs "stopping ... failed"), the same process (pid) serves
    the same ports again within 20 s, with a fresh uptime, reading the new file: the same frame closes the camera
    with 1009 (message too big) and nothing waits for a restart any more (the page's notice is gone)."""
    (tmp_path / "config.toml").write_text(SHIPPED.read_text())
    file = ConfigFile(tmp_path / "config.toml")
    file.apply({"http": {"admin_token": ADMIN}}, file.read()[1])
    port, ws_port = free_port(), free_port()
    server = await ServerProcess.start("--model", "none", "--http-port", str(port), "--ws-port", str(ws_port),
                                       cwd=tmp_path, timeout=WAIT_S * 6)
    frame = make_jpeg(1, 320, 240, noise=True)
    assert len(frame) > 8192
    try:
        base = f"http://127.0.0.1:{port}"
        assert await restart_needed(http, base) == []
        version = (await read_config(http, base))["version"]
        patch_ = {"record": {"preset": "fast"}, "ingest": {"max_frame_bytes": 4096}}
        async with http.patch(f"{base}/api/config", json=patch_,
                              headers=as_admin(**{"Content-Type": MERGE, "If-Match": version})) as resp:
            answer = await resp.json()
            waits = ["ingest.max_frame_bytes", "record.preset"]
            assert resp.status == 200 and answer["restart_needed"] == waits, answer
        assert await restart_needed(http, base) == waits
        assert await frame_answer(server.ws("door"), frame) is None, "taken: the old limit until the restart"
        async with http.get(f"{base}/healthz") as resp:
            uptime = (await resp.json())["uptime_s"]
        async with http.post(f"{base}/api/restart", headers=as_admin()) as resp:
            assert resp.status == 202, await resp.text()
        asked = time.monotonic()
        back = None
        while time.monotonic() - asked < 20:
            try:
                async with http.get(f"{base}/healthz") as resp:
                    health = await resp.json()
                    if health["uptime_s"] < uptime + (time.monotonic() - asked) - 0.5 and "stopped; starting again" in "".join(server.lines):
                        back = time.monotonic() - asked
                        break
            except Exception:  # down between the stop and the new start
                pass
            await asyncio.sleep(0.2)
        assert back is not None, "".join(server.lines[-40:])
        assert await frame_answer(server.ws("door"), frame) == 1009, "the new limit after the restart"
        assert await restart_needed(http, base) == []
        assert server.proc.returncode is None, "the same process (os.execv), not a new one"
        assert "fast" in (tmp_path / "config.toml").read_text()
        log = "".join(server.lines)
        assert "shutting down" in log and "stopping" not in log, log  # every stop step ran, none failed
        assert back < 20
    finally:
        assert await server.stop() == 0, "".join(server.lines[-40:])
