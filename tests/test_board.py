"""Board control: settings checked, kept per camera and sent on every hello; firmware images, one-time
update links, and the simulator playing the board's side of settings and updates."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sqlite3
import struct
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from camserver.board import (OTA_SLOT_BYTES, BadImage, BoardApi, BoardService, check_configured, inspect_image,
                             merge_settings)
from camserver.ingest.control import SENSOR_SETTINGS, ControlError, validate_control, validate_ota
from camserver.sim.board import apply_picture_settings
from camserver.sim.simcam import SceneSource, SimCamera, make_scene
from camserver.storage import Database
from camserver.web.session import ViewerAuth
from camserver.web.viewer import json_errors
from camserver.web.writes import write_guard
from conftest import connect_camera, decode, running_server, wait_for

TOKEN = "viewer-token-1"


def make_image(version: str | None = "2.0.0", size: int = 8192, magic: int = 0xE9,
               desc_version: str = "esp-idf: v4.4.7", chip: int = 0) -> bytes:
    """A file laid out like an ESP32 app image: header, first segment, app descriptor, the version marker."""
    header = struct.pack("<BBBBIB3sHBHH4sB", magic, 4, 2, 0x20, 0x40081000, 0xEE, b"\0\0\0", chip, 0, 0, 0xFFFF,
                         b"\0" * 4, 1)
    desc = struct.pack("<IIII32s32s16s16s32s32s20s", 0xABCD5432, 0, 0, 0, desc_version.encode(), b"arduino-lib-builder",
                       b"12:00:00", b"Jan  1 2025", b"v4.4.7-dirty", b"\x11" * 32, b"\0" * 20)
    body = bytearray(header + struct.pack("<II", 0x3F400020, len(desc)) + desc)
    if version is not None:
        body += b"\0\0\0\0camserver-firmware-version:" + version.encode() + b"\0"
    rng = np.random.default_rng(size)
    body += rng.integers(0, 256, max(0, size - len(body)), dtype=np.uint8).tobytes()
    return bytes(body[:size]) if size >= len(body) else bytes(body)


# --- the message and its table -----------------------------------------------------------------

def test_out_of_range_and_unknown_settings_name_the_key_and_range():
    """Each setting is checked against the driver's range; the error names the key and what it allows."""
    cases = [({"brightness": 3}, "brightness", "from -2 to 2"), ({"aec_value": 1201}, "aec_value", "from 0 to 1200"),
             ({"lamp": -1}, "lamp", "from 0 to 100"), ({"hmirror": 2}, "hmirror", "true or false"),
             ({"agc_gain": 1.5}, "agc_gain", "from 0 to 30"), ({"special_effect": "sepia"}, "special_effect", "0 to 6"),
             ({"colour": 1}, "colour", "allowed: framesize, quality, fps, brightness"),
             ({"quality": 64}, "quality", "from 4 to 63")]
    for body, key, words in cases:
        with pytest.raises(ControlError) as err:
            validate_control(body)
        assert key in str(err.value) and words in str(err.value), str(err.value)
        assert err.value.key == key
    message = validate_control({"type": "control", "hmirror": 1, "vflip": False, "lamp": 100, "aec_value": 0,
                                "brightness": -2, "framesize": "SVGA"})
    assert message == {"hmirror": True, "vflip": False, "lamp": 100, "aec_value": 0, "brightness": -2,
                       "framesize": "SVGA"}
    assert len(SENSOR_SETTINGS) == 24


def test_update_messages_are_checked():
    """An update message needs an http:// URL, a lower-case MD5 and a positive size, and nothing else."""
    good = {"ota_url": "http://192.0.2.1:8080/ota/abc", "ota_md5": "0" * 32, "ota_size": 10}
    assert validate_ota({"type": "control", **good}) == good
    for bad in ({**good, "ota_url": "https://x/y"}, {**good, "ota_md5": "0" * 31}, {**good, "ota_size": 0},
                {**good, "fps": 5}, {k: v for k, v in good.items() if k != "ota_size"},
                {**good, "ota_url": "http://" + "h" * 160}):
        with pytest.raises(ControlError):
            validate_ota(bad)


def test_images_are_checked_and_their_version_read():
    """Magic byte and slot size are enforced; the version comes from the marker, else the app descriptor."""
    info = inspect_image("a.bin", make_image("2.0.0"))
    assert info.version == "2.0.0" and info.project == "arduino-lib-builder" and info.chip == "esp32"
    assert info.md5 == hashlib.md5(make_image("2.0.0")).hexdigest()
    assert inspect_image("b.bin", make_image(None, desc_version="1.7.3")).version == "1.7.3"
    assert inspect_image("c.bin", make_image(None, chip=9)).chip == "esp32s3"
    with pytest.raises(BadImage, match="0xE9"):
        inspect_image("d.bin", make_image(magic=0xFF))
    with pytest.raises(BadImage) as err:
        inspect_image("e.bin", make_image(size=OTA_SLOT_BYTES + 1))
    assert err.value.too_large and "1966080" in str(err.value)
    assert inspect_image("f.bin", make_image(size=OTA_SLOT_BYTES)).size == OTA_SLOT_BYTES


# --- the simulator's picture -------------------------------------------------------------------

def test_simulator_applies_brightness_contrast_mirror_flip_and_lamp_visibly():
    """Brightness and the lamp lighten the picture, contrast spreads it, hmirror/vflip mirror it."""
    img = make_scene(3, 160, 120)
    same = apply_picture_settings(img, {"brightness": 0, "contrast": 0, "lamp": 0})
    assert np.array_equal(same, img)
    assert apply_picture_settings(img, {"brightness": 2}).mean() > img.mean() + 30
    assert apply_picture_settings(img, {"brightness": -2}).mean() < img.mean() - 30
    assert apply_picture_settings(img, {"lamp": 100}).mean() > img.mean() + 40
    assert apply_picture_settings(img, {"contrast": 2}).std() > img.std() * 1.2  # some of it clips at 255
    assert apply_picture_settings(img, {"contrast": -2}).std() < img.std() * 0.6
    assert np.array_equal(apply_picture_settings(img, {"hmirror": True}), img[:, ::-1])
    assert np.array_equal(apply_picture_settings(img, {"vflip": True}), img[::-1])
    assert np.array_equal(apply_picture_settings(img, {"hmirror": True, "vflip": True}), img[::-1, ::-1])


# --- settings kept by the server -----------------------------------------------------------------

def test_config_settings_win_over_stored_ones_key_by_key():
    """At start-up every key from [cameras.<id>.settings] replaces the stored one; other keys stay."""
    stored = {"door": {"brightness": 2, "vflip": True}, "yard": {"lamp": 10}}
    configured = {"door": {"brightness": -1}, "shed": {"hmirror": True}}
    assert merge_settings(stored, configured) == {
        "door": {"brightness": -1, "vflip": True}, "yard": {"lamp": 10}, "shed": {"hmirror": True}}


def test_config_tables_are_checked_like_control_messages():
    """A [cameras.<id>.settings] table: switches become bools; a bad key or value names the key and its range."""
    assert check_configured({"hmirror": 1, "lamp": 20, "framesize": "VGA"}) == {"hmirror": True, "lamp": 20,
                                                                             "framesize": "VGA"}
    assert check_configured({}) == {}
    for table, key, allowed in (({"lamp": 200}, "lamp", "an integer from 0 to 100"),
                                ({"type": "control"}, "type", "framesize, quality")):
        with pytest.raises(ControlError) as err:
            check_configured(table)
        assert err.value.key == key and allowed in err.value.allowed


async def opened_database(folder: Path) -> Database:
    """storage.dir's database, opened."""
    database = Database(folder)
    await database.open()
    return database


async def test_settings_survive_a_restart_and_the_config_wins(tmp_path):
    """Desired and reported values are stored; on the next start the config's keys win over stored ones."""
    database = await opened_database(tmp_path)
    service = BoardService(tmp_path)
    await service.start(database)
    await service.set_desired("door", {"brightness": 2, "vflip": True})
    service.on_status("door", {"type": "status", "frame_size": "VGA", "quality": 12, "max_fps": 8.0,
                               "settings": {"brightness": 2, "vflip": True}, "unsupported": ["sharpness"]})
    await service.stop()
    await database.close()
    database = await opened_database(tmp_path)
    again = BoardService(tmp_path, configured={"door": {"brightness": -1}})
    await again.start(database)
    try:
        assert again.on_hello("door", {"firmware": "1.1.0"}) == {"brightness": -1, "vflip": True}
        assert again.settings("door")["reported"] == {"brightness": 2, "vflip": True, "framesize": "VGA",
                                                      "quality": 12, "fps": 8.0}
        assert again.on_hello("other") is None  # nothing kept: nothing sent
    finally:
        await again.stop()
        await database.close()
    db = sqlite3.connect(tmp_path / "camserver.db")
    row = db.execute("SELECT desired FROM camera_settings WHERE camera = 'door'").fetchone()
    db.close()
    assert json.loads(row[0]) == {"brightness": -1, "vflip": True}  # the merged values were stored


# --- the API on its own (fake camera side, injected clock) ---------------------------------------

class FakeClock:
    """Wall-clock time the test moves forward."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def board_app(tmp_path: Path, clock: FakeClock | None = None, auth: ViewerAuth | None = None,
                    connected: bool = True, steady: FakeClock | None = None, **api_options: Any,
                    ) -> AsyncIterator[tuple[str, list[tuple[str, dict]], BoardService]]:
    """BoardApi on a real port with a camera 'cam' whose control messages are recorded, not sent
    (behind the app's write guard when `auth` is given). `clock` alone is both wall and steady time;
    with `steady` it is the wall clock only."""
    database = await opened_database(tmp_path)
    service = BoardService(tmp_path, clock=clock or time.time, steady=steady or clock or time.monotonic)
    await service.start(database)
    sent: list[tuple[str, dict]] = []
    base = {}

    async def send_control(camera_id: str, message: dict) -> bool:
        if connected:
            sent.append((camera_id, message))
        return connected

    api = BoardApi(service, lambda camera_id: camera_id == "cam", send_control,
                   lambda camera_id: base["url"] if connected else None, **api_options)
    app = web.Application(middlewares=[json_errors] + ([write_guard(auth)] if auth is not None else []))
    api.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield base["url"], sent, service
    finally:
        await runner.cleanup()
        await service.stop()
        await database.close()


async def upload(http: aiohttp.ClientSession, url: str, data: bytes, name: str = "cam-2.0.0.bin",
                 headers: dict | None = None) -> aiohttp.ClientResponse:
    """POST an image as a multipart upload, as curl -F file=@name does."""
    async with http.post(f"{url}/api/firmware", data=_form(data, name), headers=headers) as resp:
        await resp.read()
        return resp


async def test_upload_refuses_a_wrong_magic_byte_and_an_oversized_image(tmp_path, http):
    """Wrong magic: 400 naming 0xE9; over the 0x1E0000 slot: 413; a good image: 201, listed with size, MD5, version."""
    async with board_app(tmp_path) as (url, _, _):
        resp = await upload(http, url, make_image(magic=0x00))
        assert resp.status == 400
        async with http.post(f"{url}/api/firmware", data=_form(make_image(magic=0x00))) as resp:
            assert "0xE9" in (await resp.json())["detail"]
        try:
            resp = await upload(http, url, make_image(size=OTA_SLOT_BYTES + 4096))
            assert resp.status == 413
        except aiohttp.ClientOSError:
            pass  # the server may stop reading the body once it knows: the refusal is what counts
        image = make_image("2.0.0")
        async with http.post(f"{url}/api/firmware", data=_form(image)) as resp:
            assert resp.status == 201, await resp.text()
            record = await resp.json()
        assert record == {"name": "cam-2.0.0.bin", "size": len(image), "md5": hashlib.md5(image).hexdigest(),
                          "version": "2.0.0", "project": "arduino-lib-builder", "chip": "esp32", "idf": "v4.4.7-dirty"}
        async with http.post(f"{url}/api/firmware", data=_form(image)) as resp:
            assert resp.status == 409  # a name is never silently replaced
        async with http.get(f"{url}/api/firmware") as resp:
            listing = await resp.json()
        assert listing["images"] == [record] and listing["max_size"] == OTA_SLOT_BYTES
        assert sorted(p.name for p in (tmp_path / "firmware").iterdir()) == ["cam-2.0.0.bin"]
        async with http.delete(f"{url}/api/firmware/cam-2.0.0.bin") as resp:
            assert resp.status == 200
        async with http.get(f"{url}/api/firmware") as resp:
            assert (await resp.json())["images"] == []


def _form(data: bytes, name: str = "cam-2.0.0.bin") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename=name, content_type="application/octet-stream")
    return form


async def test_link_lifetime_runs_on_steady_time_not_the_wall_clock(tmp_path, http):
    """A wall-clock step forward does not void a link early, nor a step back keep it alive: the
    ten minutes run on steady time; the wall clock only labels expires_at."""
    wall, steady = FakeClock(), FakeClock()
    image = make_image("2.0.0", size=200_000)
    async with board_app(tmp_path, wall, steady=steady) as (url, sent, service):
        assert (await upload(http, url, image)).status == 201

        async def new_link() -> tuple[str, dict]:
            async with http.post(f"{url}/api/cameras/cam/firmware", json={"image": "cam-2.0.0.bin"}) as resp:
                assert resp.status == 202
                return sent[-1][1]["ota_url"], await resp.json()

        # the wall clock jumps a day ahead (an NTP sync after boot): the link still works
        link, shown = await new_link()
        assert shown["expires_at"] == pytest.approx(wall.now + 600.0)  # a wall-clock label
        wall.now += 86_400.0
        assert service.firmware_state("cam")["update"]["state"] == "sent"
        async with http.get(link) as resp:
            assert resp.status == 200
        # the wall clock steps a day back after the link's ten steady minutes: it is gone all the same
        link, _ = await new_link()
        wall.now -= 86_400.0
        steady.now += 601.0
        assert service.firmware_state("cam")["update"]["state"] == "expired"
        async with http.get(link) as resp:
            assert resp.status == 404
        # within its steady lifetime a step back changes nothing
        link, _ = await new_link()
        wall.now -= 3_600.0
        steady.now += 599.0
        async with http.get(link) as resp:
            assert resp.status == 200


async def test_one_time_link_works_once_and_expires_after_ten_minutes(tmp_path, http):
    """The control message carries a one-time URL, MD5 and size; a second download or one after 10 min gets 404."""
    clock = FakeClock()
    image = make_image("2.0.0", size=300_000)
    async with board_app(tmp_path, clock) as (url, sent, service):
        assert (await upload(http, url, image)).status == 201
        async with http.post(f"{url}/api/cameras/cam/firmware", json={"image": "cam-2.0.0.bin"}) as resp:
            assert resp.status == 202, await resp.text()
            assert (await resp.json())["version"] == "2.0.0"
        camera, message = sent[-1]
        assert camera == "cam" and set(message) == {"ota_url", "ota_md5", "ota_size"}
        assert message["ota_md5"] == hashlib.md5(image).hexdigest() and message["ota_size"] == len(image)
        token = message["ota_url"].rsplit("/", 1)[1]
        assert message["ota_url"] == f"{url}/ota/{token}" and len(token) >= 32
        async with http.head(message["ota_url"]) as resp:
            assert resp.status == 405  # a HEAD would spend the link
        async with http.get(message["ota_url"]) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(len(image))
            assert resp.headers["x-MD5"] == message["ota_md5"]
            assert await resp.read() == image
        assert service.firmware_state("cam")["update"]["state"] == "downloading"
        async with http.get(message["ota_url"]) as resp:
            assert resp.status == 404  # spent
        # a new link: still good just before its lifetime ends, gone after
        for age, status in ((599.0, 200), (601.0, 404)):
            async with http.post(f"{url}/api/cameras/cam/firmware", json={"image": "cam-2.0.0.bin"}) as resp:
                assert resp.status == 202
            link = sent[-1][1]["ota_url"]
            clock.now += age
            async with http.get(link) as resp:
                assert resp.status == status, age
        assert service.firmware_state("cam")["update"]["state"] == "expired"
        async with http.get(f"{url}/ota/not-a-token") as resp:
            assert resp.status == 404
        async with http.post(f"{url}/api/cameras/cam/firmware", json={"image": "missing.bin"}) as resp:
            assert resp.status == 404
        async with http.post(f"{url}/api/cameras/ghost/firmware", json={"image": "cam-2.0.0.bin"}) as resp:
            assert resp.status == 404


async def test_writes_need_the_write_permission(tmp_path, http):
    """Behind the app's write guard with an admin token: control, upload, update and delete get 401 without a
    credential and 403 with the viewer token; reads still work; the admin token goes through."""
    admin = "admin-token-1"
    auth = ViewerAuth(TOKEN, {}, None, admin_token=admin)
    async with board_app(tmp_path, auth=auth) as (url, sent, _):
        for headers, status in (({}, 401), ({"Authorization": f"Bearer {TOKEN}"}, 403)):
            async with http.post(f"{url}/api/cameras/cam/control", json={"lamp": 10}, headers=headers) as resp:
                assert resp.status == status and (status == 403 or "WWW-Authenticate" in resp.headers)
            assert (await upload(http, url, make_image(), headers=headers)).status == status
            async with http.post(f"{url}/api/cameras/cam/firmware", json={"image": "x.bin"}, headers=headers) as resp:
                assert resp.status == status
            async with http.delete(f"{url}/api/firmware/x.bin", headers=headers) as resp:
                assert resp.status == status
        async with http.get(f"{url}/api/cameras/cam/settings") as resp:
            assert resp.status == 200 and (await resp.json())["desired"] == {}
        assert sent == []
        admin_header = {"Authorization": f"Bearer {admin}"}
        async with http.post(f"{url}/api/cameras/cam/control", json={"lamp": 10}, headers=admin_header) as resp:
            assert resp.status == 202
        assert sent == [("cam", {"lamp": 10})]
        assert (await upload(http, url, make_image(), headers=admin_header)).status == 201, "multipart passes the guard"


async def test_settings_for_an_offline_camera_are_kept_and_sent_on_hello(tmp_path, http):
    """POST control while the camera is offline: 409, but the values are kept and go out on its next hello."""
    async with board_app(tmp_path, connected=False) as (url, sent, service):
        async with http.post(f"{url}/api/cameras/cam/control", json={"vflip": True}) as resp:
            assert resp.status == 409 and "kept" in (await resp.json())["detail"]
        assert service.on_hello("cam", {"firmware": "1.1.0"}) == {"vflip": True}


# --- end to end: the real server, the simulator ----------------------------------------------------

async def _sim_running(srv, cam: SimCamera) -> tuple[asyncio.Task, Any]:
    task = asyncio.create_task(cam.run())
    await wait_for(lambda: (c := srv.server.hub.get(cam.camera_id)) is not None and c.connected
                   and isinstance(c.status, dict) and c.status.get("type") == "status", what="simulator status")
    return task, srv.server.hub.get(cam.camera_id)


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_bad_settings_get_400_and_nothing_reaches_the_camera(http):
    """Out-of-range and unknown settings: 400 naming key and range; the camera's first message is the valid one."""
    async with running_server(None) as srv:
        cam = await connect_camera(srv.ws("raw"))
        try:
            await cam.send(json.dumps({"type": "hello", "camera_id": "raw", "firmware": "1.1.0"}))
            await wait_for(lambda: (c := srv.server.hub.get("raw")) is not None and c.hello is not None)
            url = f"{srv.http}/api/cameras/raw/control"
            for body, key, allowed in (({"brightness": 5}, "brightness", "an integer from -2 to 2"),
                                       ({"lamp": 101, "fps": 5}, "lamp", "an integer from 0 to 100"),
                                       ({"vflip": "yes"}, "vflip", "true or false"),
                                       ({"exposure": 3}, "exposure", "framesize, quality, fps, brightness")):
                async with http.post(url, json=body) as resp:
                    assert resp.status == 400
                    answer = await resp.json()
                assert answer["key"] == key and allowed in answer["allowed"] and key in answer["detail"]
            async with http.get(f"{srv.http}/api/cameras/raw/settings") as resp:
                assert (await resp.json())["desired"] == {}  # nothing kept either
            async with http.post(url, json={"contrast": 1}) as resp:
                assert resp.status == 202
            first = json.loads(await asyncio.wait_for(cam.recv(), 5))
            assert first == {"type": "control", "contrast": 1}
        finally:
            await cam.close()


async def test_settings_reach_the_simulator_within_a_second_and_again_after_it_reconnects(http):
    """A setting posted shows in the simulator's next status within 1 s, in its picture, and again on a fresh boot."""
    async with running_server(None) as srv:
        server_url = f"ws://127.0.0.1:{srv.server.ws_port}"
        sim = SimCamera(server_url, "porch", SceneSource(), fps=10, size=(320, 240))
        task, camera = await _sim_running(srv, sim)
        try:
            async with http.get(f"{srv.http}/cameras/porch/snapshot.jpg?raw=1") as resp:
                before = decode(await resp.read()).mean()
            wanted = {"brightness": 2, "hmirror": True, "lamp": 60, "sharpness": 1, "fps": 8}
            async with http.post(f"{srv.http}/api/cameras/porch/control", json=wanted) as resp:
                assert resp.status == 202, await resp.text()
            posted = time.monotonic()
            await wait_for(lambda: camera.status.get("settings", {}).get("brightness") == 2, timeout=1.0,
                           what="the status showing the setting")
            assert time.monotonic() - posted < 1.0
            status = camera.status
            assert status["settings"]["hmirror"] is True and status["settings"]["lamp"] == 60
            assert status["max_fps"] == 8 and status["unsupported"] == ["sharpness"]
            assert "sharpness" not in status["settings"]
            seq = camera.raw.frame.seq
            await wait_for(lambda: camera.raw.frame.seq > seq + 1, what="a frame taken after the change")
            async with http.get(f"{srv.http}/cameras/porch/snapshot.jpg?raw=1") as resp:
                assert decode(await resp.read()).mean() > before + 40  # brighter, lit by the lamp
            async with http.get(f"{srv.http}/api/cameras/porch/settings") as resp:
                shown = await resp.json()
            assert shown["desired"] == {"brightness": 2, "hmirror": True, "lamp": 60, "sharpness": 1, "fps": 8}
            assert shown["reported"]["brightness"] == 2 and shown["reported"]["fps"] == 8
            assert shown["unsupported"] == ["sharpness"]
        finally:
            await _stop(task)
        await wait_for(lambda: not camera.connected)
        # a rebooted board: its defaults, and a version that tells its status from the first one's
        fresh = SimCamera(server_url, "porch", SceneSource(), fps=10, size=(320, 240), firmware="simcam-1.0+b")
        assert fresh.settings["brightness"] == 0
        task = asyncio.create_task(fresh.run())
        try:
            await wait_for(lambda: camera.connected and camera.hello.get("firmware") == "simcam-1.0+b",
                           what="the reconnect")
            connected = time.monotonic()
            await wait_for(lambda: camera.status.get("firmware") == "simcam-1.0+b"
                           and camera.status.get("settings", {}).get("brightness") == 2, timeout=1.0,
                           what="the settings sent again on hello")
            assert time.monotonic() - connected < 1.0
            assert camera.status["settings"]["lamp"] == 60 and camera.status["max_fps"] == 8
        finally:
            await _stop(task)
        # kept in the database
        db = srv.server.database
        row = await db.use(lambda conn: conn.execute("SELECT desired FROM camera_settings WHERE camera = 'porch'").fetchone())
        assert json.loads(row[0])["brightness"] == 2


async def test_settings_are_kept_when_the_events_stage_is_off(http):
    """With the events stage off the settings are still kept in the database, and still reach the camera."""
    async with running_server(None, events={"enabled": False}) as srv:
        sim = SimCamera(f"ws://127.0.0.1:{srv.server.ws_port}", "attic", SceneSource(), fps=10, size=(320, 240))
        task, camera = await _sim_running(srv, sim)
        try:
            async with http.post(f"{srv.http}/api/cameras/attic/control", json={"colorbar": True}) as resp:
                assert resp.status == 202
            await wait_for(lambda: camera.status.get("settings", {}).get("colorbar") is True, what="the status")
        finally:
            await _stop(task)
        db = srv.server.database
        row = await db.use(lambda conn: conn.execute("SELECT desired FROM camera_settings WHERE camera = 'attic'").fetchone())
        assert json.loads(row[0]) == {"colorbar": True}


async def _upload_to_server(http: aiohttp.ClientSession, srv, image: bytes, name: str) -> None:
    async with http.post(f"{srv.http}/api/firmware", data=_form(image, name)) as resp:
        assert resp.status == 201, await resp.text()


async def test_simulator_updates_its_firmware_over_the_air(http):
    """The simulator downloads the image, checks it, says hello with the new version, and gets its settings back."""
    async with running_server(None, http={"token": TOKEN}) as srv:
        http.headers["Authorization"] = f"Bearer {TOKEN}"  # /ota/<token> must not need it: the simulator sends none
        sim = SimCamera(f"ws://127.0.0.1:{srv.server.ws_port}", "shed", SceneSource(), fps=10, size=(320, 240))
        task, camera = await _sim_running(srv, sim)
        try:
            async with http.post(f"{srv.http}/api/cameras/shed/control", json={"vflip": True}) as resp:
                assert resp.status == 202
            await _upload_to_server(http, srv, make_image("2.0.0", size=200_000), "shed-2.0.0.bin")
            async with http.post(f"{srv.http}/api/cameras/shed/firmware", json={"image": "shed-2.0.0.bin"}) as resp:
                assert resp.status == 202, await resp.text()
            await wait_for(lambda: sim.updates == 1, what="the update")
            await wait_for(lambda: camera.connected and (camera.status or {}).get("firmware") == "2.0.0"
                           and camera.status.get("settings", {}).get("vflip") is True, what="hello with 2.0.0")
            async with http.get(f"{srv.http}/api/cameras") as resp:
                shown = {c["id"]: c for c in await resp.json()}["shed"]
            assert shown["status"]["firmware"] == "2.0.0" and "ota_error" not in shown["status"]
            async with http.get(f"{srv.http}/api/cameras/shed/firmware") as resp:
                state = await resp.json()
            assert state["running"] == "2.0.0" and state["update"]["state"] == "done"
        finally:
            await _stop(task)


async def test_wrong_md5_on_the_board_keeps_the_old_firmware_and_reports_why(http):
    """An image changed on disk after the link was made: the board's MD5 check fails, it keeps running and says why."""
    async with running_server(None) as srv:
        sim = SimCamera(f"ws://127.0.0.1:{srv.server.ws_port}", "gate", SceneSource(), fps=10, size=(320, 240))
        task, camera = await _sim_running(srv, sim)
        try:
            image = make_image("3.0.0", size=100_000)
            await _upload_to_server(http, srv, image, "gate-3.0.0.bin")
            path = Path(srv.server.config.storage.dir) / "firmware" / "gate-3.0.0.bin"
            async with http.post(f"{srv.http}/api/cameras/gate/firmware", json={"image": "gate-3.0.0.bin"}) as resp:
                assert resp.status == 202
            damaged = bytearray(image)
            damaged[50_000] ^= 0xFF  # a flipped bit on disk, same size
            path.write_bytes(bytes(damaged))
            await wait_for(lambda: "ota_error" in (camera.status or {}) and camera.connected, what="the error")
            async with http.get(f"{srv.http}/api/cameras") as resp:
                shown = {c["id"]: c for c in await resp.json()}["gate"]
            assert shown["status"]["ota_error"] == "Update error: MD5 Check Failed (7)"
            assert shown["status"]["firmware"] == "simcam-1.0" and sim.updates == 0
            async with http.get(f"{srv.http}/api/cameras/gate/firmware") as resp:
                state = await resp.json()
            assert state["update"]["state"] == "failed" and "MD5" in state["update"]["error"]
            seq = camera.raw.frame.seq
            await wait_for(lambda: camera.raw.frame.seq > seq, what="frames after the failed update")
        finally:
            await _stop(task)


async def _board_says(url: str, version: str, status: dict[str, Any] | None = None) -> Any:
    """A board's connection as the firmware opens it: hello with its version, then a status."""
    cam = await connect_camera(url)
    await cam.send(json.dumps({"type": "hello", "camera_id": "roof", "firmware": version, "frame_size": "VGA",
                               "quality": 12, "free_heap": 150000, "rssi": -60}))
    await cam.send(json.dumps({"type": "status", "fps_sent": 0, "frames_sent": 0, "firmware": version,
                               **(status or {})}))
    return cam


@pytest.mark.parametrize("said_hello", [False, True], ids=["exits-at-start", "never-streams"])
async def test_a_rolled_back_update_is_shown_as_rolled_back(http, said_hello):
    """The new image crashes at start (no hello) or says hello but never proves itself: the previous image's status
    says "ota": "rolled_back", and /api/cameras/<id>/firmware shows the update rolled_back, the old version running."""
    async with running_server(None) as srv:
        await _upload_to_server(http, srv, make_image("1.2.0", size=100_000), "roof-1.2.0.bin")
        cam = await _board_says(srv.ws("roof"), "1.1.0")
        try:
            await wait_for(lambda: (c := srv.server.hub.get("roof")) is not None and c.connected, what="the board")
            async with http.post(f"{srv.http}/api/cameras/roof/firmware", json={"image": "roof-1.2.0.bin"}) as resp:
                assert resp.status == 202, await resp.text()
            message = json.loads(await asyncio.wait_for(cam.recv(), 10))
            async with http.get(message["ota_url"]) as resp:  # the board downloads the image, then reboots
                assert resp.status == 200 and len(await resp.read()) == message["ota_size"]
        finally:
            await cam.close()
        if said_hello:
            new = await _board_says(srv.ws("roof"), "1.2.0")
            await wait_for(lambda: srv.server.board.firmware_state("roof")["running"] == "1.2.0", what="1.2.0")
            assert srv.server.board.firmware_state("roof")["update"]["state"] == "done"
            await new.close()
        old = await _board_says(srv.ws("roof"), "1.1.0", {"ota": "rolled_back"})
        try:
            async with http.get(f"{srv.http}/api/cameras/roof/firmware") as resp:
                assert resp.status == 200
            await wait_for(lambda: srv.server.board.firmware_state("roof")["update"]["state"] == "rolled_back",
                           what="rolled_back")
            async with http.get(f"{srv.http}/api/cameras/roof/firmware") as resp:
                shown = await resp.json()
            assert shown["running"] == "1.1.0"
            assert shown["update"]["state"] == "rolled_back" and shown["update"]["version"] == "1.2.0"
            assert "1.1.0" in shown["update"]["error"]
        finally:
            await old.close()


async def test_an_old_rollback_report_does_not_touch_a_new_update(http):
    """A board still reporting an earlier rollback while a new update is only sent: the update stays "sent"."""
    async with running_server(None) as srv:
        await _upload_to_server(http, srv, make_image("1.3.0", size=100_000), "roof-1.3.0.bin")
        cam = await _board_says(srv.ws("roof"), "1.1.0", {"ota": "rolled_back"})
        try:
            await wait_for(lambda: (c := srv.server.hub.get("roof")) is not None and c.connected, what="the board")
            async with http.post(f"{srv.http}/api/cameras/roof/firmware", json={"image": "roof-1.3.0.bin"}) as resp:
                assert resp.status == 202
            await asyncio.wait_for(cam.recv(), 10)
            await cam.send(json.dumps({"type": "status", "firmware": "1.1.0", "ota": "rolled_back"}))
            await wait_for(lambda: srv.server.hub.get("roof").status.get("ota") == "rolled_back", what="status")
            assert srv.server.board.firmware_state("roof")["update"]["state"] == "sent"
        finally:
            await cam.close()
