"""[cameras.<id>] name and record through real servers and clients: a name saved by PATCH /api/config shows in
/api/cameras within 2 s without a restart, survives one, and the shipped config.toml keeps every comment; a bad
name is refused with the config's own line; one camera's own recording mode "off" stops its recording while
another camera goes on recording, live."""

from __future__ import annotations

import asyncio

from camserver.config.writeback import changed_keys

from conftest import connect_camera, feeding
from test_configapi import SHIPPED, as_admin, comment_lines, patch, read_config, served, shipped_copy
from test_settings_live import poll


def field(cams, camera: str, key: str):
    return next((c[key] for c in cams if c["id"] == camera), None)


async def test_a_name_applies_live_survives_a_restart_and_keeps_the_comments(tmp_path, http):
    """A camera shows its id as its name; PATCH {"cameras": {"door": {"name": "Front door"}}}: taken live (no
    restart asked, now or in GET's restart_needed), /api/cameras shows it within 2 s; the file keeps every comment;
    the server started again from the file shows the name too."""
    file = shipped_copy(tmp_path)
    shipped = comment_lines(SHIPPED.read_text())
    async with served(file) as (server, base):
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        try:
            async with feeding(cam, fps=5):
                await poll(http, f"{base}/api/cameras", lambda cams: field(cams, "door", "name") == "door")
                version = (await read_config(http, base))["version"]
                status, body = await patch(http, base, {"cameras": {"door": {"name": "Front door"}}}, version)
                assert status == 200, body
                assert body["applied_live"] == ["cameras.door.name"] and body["restart_needed"] == [], body
                took = await poll(http, f"{base}/api/cameras", lambda cams: field(cams, "door", "name") == "Front door")
                assert took < 2.0, took
                assert (await read_config(http, base))["restart_needed"] == []
        finally:
            await cam.close()
    assert comment_lines(file.path.read_text()) == shipped, "every comment of the shipped file stays"
    assert 'name = "Front door"' in file.path.read_text()
    async with served(file) as (server, base):
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        try:
            await poll(http, f"{base}/api/cameras", lambda cams: field(cams, "door", "name") == "Front door")
        finally:
            await cam.close()


async def test_a_bad_name_is_refused_with_the_configs_own_line(tmp_path, http):
    """A name with a control character, and one of 41 characters: 400, one line each, nothing written."""
    file = shipped_copy(tmp_path)
    before = file.path.read_bytes()
    async with served(file) as (_, base):
        version = (await read_config(http, base))["version"]
        status, body = await patch(http, base, {"cameras": {"door": {"name": "Front\x1b[2Jdoor"},
                                                            "yard": {"name": "y" * 41}}}, version)
    assert status == 400, body
    lines = body["problems"]
    assert len(lines) == 2, lines
    assert all("1 to 40 printable characters" in line for line in lines), lines
    assert any(line.startswith("config error: cameras.door.name = ") for line in lines), lines
    assert any(line.startswith("config error: cameras.yard.name = ") for line in lines), lines
    assert file.path.read_bytes() == before


async def recorded(http, base: str, camera: str) -> int:
    async with http.get(f"{base}/api/cameras", headers=as_admin()) as resp:
        cams = await resp.json()
    return field(cams, camera, "recording")["frames_recorded"]


async def test_one_cameras_own_mode_off_stops_its_recording_while_another_records_on(tmp_path, http):
    """Both cameras record continuously; PATCH {"cameras": {"yard": {"record": "off"}}}: taken live; /api/cameras
    gives yard's mode as off and door's as continuous within 2 s; over the next 2 s yard records no frame while
    door records on. The mode comes back with the file after a restart."""
    file = shipped_copy(tmp_path)
    async with served(file) as (server, base):
        version = (await read_config(http, base))["version"]
        status, body = await patch(http, base, {"record": {"mode": "continuous"}}, version)
        assert status == 200, body
        door = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        yard = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/yard")
        try:
            async with feeding(door, fps=10), feeding(yard, fps=10):
                await poll(http, f"{base}/api/cameras", lambda cams: all(
                    (field(cams, c, "recording") or {}).get("frames_recorded", 0) > 5 for c in ("door", "yard")))
                version = (await read_config(http, base))["version"]
                status, body = await patch(http, base, {"cameras": {"yard": {"record": "off"}}}, version)
                assert status == 200, body
                assert body["applied_live"] == ["cameras.yard.record"] and body["restart_needed"] == [], body
                took = await poll(http, f"{base}/api/cameras", lambda cams: field(cams, "yard", "recording")["mode"] == "off"
                                  and field(cams, "door", "recording")["mode"] == "continuous")
                assert took < 2.0, took
                await asyncio.sleep(0.3)  # a frame sent before the change may still be counted
                yard_then, door_then = await recorded(http, base, "yard"), await recorded(http, base, "door")
                await asyncio.sleep(2.0)
                assert await recorded(http, base, "yard") == yard_then, "yard records nothing in mode off"
                assert await recorded(http, base, "door") >= door_then + 10, "door records on"
        finally:
            await door.close()
            await yard.close()
    async with served(file) as (server, base):
        assert server.recorder.mode_of("yard") == "off" and server.recorder.mode_of("door") == "continuous"


def test_a_cameras_keys_are_named_one_level_deeper_in_the_file_and_in_a_dumped_config():
    """changed_keys names cameras.<id>.<key>, from the file's tables and from a dumped Config alike, so a name is
    live while a camera's motion table waits for a restart."""
    from camserver.config.loading import from_mapping
    before = {"cameras": {"ids": [], "door": {"motion": {"recheck_s": 2.0}}}}
    after = {"cameras": {"ids": [], "door": {"name": "Front door", "motion": {"recheck_s": 3.0}}, "yard": {"record": "off"}}}
    expected = ["cameras.door.motion", "cameras.door.name", "cameras.yard.record"]
    assert changed_keys(before, after) == expected
    dumped = [from_mapping(t).model_dump(mode="json") for t in (before, after)]
    assert changed_keys(*dumped) == expected


async def test_a_notification_names_the_camera_by_its_saved_name(tmp_path, http):
    """A name saved from the page: the next event's notification (a real ntfy server) says "Person at Front door"."""
    from fake_ntfy import fake_ntfy

    async with fake_ntfy() as fake:
        file = shipped_copy(tmp_path)
        file.apply({"notify": [{"urls": [f"ntfy://{fake.url}/door"], "attach": "none"}]}, file.read()[1])
        async with served(file) as (server, base):
            version = (await read_config(http, base))["version"]
            status, body = await patch(http, base, {"cameras": {"door": {"name": "Front door"}}}, version)
            assert status == 200 and body["restart_needed"] == [], body
            cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
            try:
                async with feeding(cam, fps=5):
                    await fake.wait(lambda: len(fake.received) >= 1)
            finally:
                await cam.close()
    assert fake.received[0].title == "Person at Front door", fake.received[0]
