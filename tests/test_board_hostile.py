"""Board control under abuse and repetition: a second refused update, the OTA link kept out of the logs,
multipart uploads of many parts, image names with a newline, hostile reported settings, a status flood."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import socket
import threading
import time

import pytest
import websockets
import websockets.sync.client

from camserver.board import BoardService
from camserver.board.firmware import FirmwareStore, OtaLink
from camserver.cli import setup_logging
from camserver.sim.simcam import SceneSource, SimCamera
from conftest import WAIT_S, connect_camera, running_server, wait_for
from test_board import _form, board_app, make_image, opened_database

REFUSAL = "no OTA app slot: flash the OTA partition table once over USB"  # the firmware's ota_should_start


def status(**fields) -> dict:
    """A board status as the firmware formats it."""
    return {"type": "status", "fps_sent": 0.0, "free_heap": 100000, "rssi": -60, "reconnects": 0, "frames_sent": 0,
            "capture_failures": 0, "frame_size": "VGA", "quality": 12, "max_fps": 10.0, "firmware": "1.1.0",
            "settings": {"brightness": 0}, "unsupported": [], **fields}


class RefusingBoard:
    """A board without an OTA slot, over a real websocket: it refuses every update with the same error at
    once and repeats that error in every status (here every 0.3 s; the firmware's every 5 s)."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.error = ""
        self.refused = 0
        self.tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._statuses())]

    async def _read(self) -> None:
        async for message in self.ws:
            if isinstance(message, str) and "ota_url" in json.loads(message):
                self.error = REFUSAL
                self.refused += 1
                await self.ws.send(json.dumps(status(ota_error=self.error)))

    async def _statuses(self) -> None:
        while True:
            await asyncio.sleep(0.3)
            await self.ws.send(json.dumps(status(ota_error=self.error) if self.error else status()))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.ws.close()


async def test_a_second_update_refused_with_the_same_error_is_failed(http):
    """Two updates refused for the same reason: both are recorded failed (the second stayed `sent`, then
    `expired`, because its error equals the one the board reported before)."""
    async with running_server(None) as srv:
        board = RefusingBoard(await connect_camera(srv.ws("noslot")))
        try:
            await board.ws.send(json.dumps({"type": "hello", "camera_id": "noslot", "firmware": "1.1.0"}))
            await board.ws.send(json.dumps(status()))
            camera = await _camera_with_status(srv, "noslot")
            async with http.post(f"{srv.http}/api/firmware", data=_form(make_image("2.0.0"), "n-2.bin")) as resp:
                assert resp.status == 201
            for attempt in (1, 2):
                async with http.post(f"{srv.http}/api/cameras/noslot/firmware", json={"image": "n-2.bin"}) as resp:
                    assert resp.status == 202, await resp.text()
                await wait_for(lambda: board.refused == attempt and camera.status.get("ota_error") == REFUSAL,
                               what=f"refusal {attempt}")
                state = await _update_state(http, srv, "noslot", until=lambda s: s["state"] != "sent")
                assert state["state"] == "failed" and state["error"] == REFUSAL, (attempt, state)
            # the board keeps repeating its error: a later status does not change the record
            await board.ws.send(json.dumps(status(ota_error=REFUSAL)))
            assert (await _update_state(http, srv, "noslot"))["state"] == "failed"
        finally:
            await board.close()


async def _camera_with_status(srv, camera_id: str):
    await wait_for(lambda: (c := srv.server.hub.get(camera_id)) is not None and isinstance(c.status, dict)
                   and c.status.get("type") == "status", what="the board's status")
    return srv.server.hub.get(camera_id)


async def _update_state(http, srv, camera_id: str, until=lambda state: True) -> dict:
    deadline = time.monotonic() + WAIT_S
    while True:
        async with http.get(f"{srv.http}/api/cameras/{camera_id}/firmware") as resp:
            state = (await resp.json())["update"]
        if until(state) or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.02)


async def test_an_old_error_in_a_status_sent_before_the_update_was_read_does_not_fail_it(tmp_path):
    """Until the board has read the update message, a status repeating the previous error is not this
    update's failure; once it has, the same text is."""
    database = await opened_database(tmp_path)
    service = BoardService(tmp_path)
    await service.start(database)
    try:
        link = OtaLink("t" * 32, "cam", "a.bin", "0" * 32, 100, time.time() + 600, time.monotonic() + 600)
        received = service.update_sent("cam", link, "2.0.0", status(ota_error=REFUSAL))
        service.on_status("cam", status(ota_error=REFUSAL))  # in flight when the update went out
        assert service.firmware_state("cam")["update"]["state"] == "sent"
        received()
        service.on_status("cam", status(ota_error=REFUSAL))
        shown = service.firmware_state("cam")["update"]
        assert shown["state"] == "failed" and shown["error"] == REFUSAL
        assert not {"received", "number", "error_before"} & set(shown)
    finally:
        await service.stop()
        await database.close()


# --- the one-time link is never logged -----------------------------------------------------------

async def test_no_ota_token_in_any_log_line_at_any_level(http, caplog):
    """A whole update (upload, link sent, download, hello with the new version) at DEBUG: no log line
    holds the link's token; camserver's own lines name the image, its size and MD5 instead."""
    caplog.set_level(logging.DEBUG)
    setup_logging("debug")  # the cli's handler filter, on pytest's handlers: the libraries' lines too
    async with running_server(None) as srv:
        sim = SimCamera(f"ws://127.0.0.1:{srv.server.ws_port}", "loft", SceneSource(), fps=5, size=(320, 240))
        task = asyncio.create_task(sim.run())
        try:
            await _camera_with_status(srv, "loft")
            image = make_image("2.0.0", size=150_000)
            async with http.post(f"{srv.http}/api/firmware", data=_form(image, "loft-2.bin")) as resp:
                assert resp.status == 201
            async with http.post(f"{srv.http}/api/cameras/loft/firmware", json={"image": "loft-2.bin"}) as resp:
                assert resp.status == 202
            await wait_for(lambda: sim.updates == 1, what="the update")
            await wait_for(lambda: srv.server.board.firmware_state("loft")["update"]["state"] == "done",
                           what="hello with the new version")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    tokens = list(srv.server.board.links._links)  # the spent link stays until the next one is made
    assert tokens, "the test must know the token it looks for"
    lines = [record.getMessage() for record in caplog.records]
    for token in tokens:
        for line in lines:
            assert token[:12] not in line, line
    md5 = hashlib.md5(image).hexdigest()
    assert any("loft-2.bin" in line and md5 in line and "150000" in line for line in lines)


# --- uploads ------------------------------------------------------------------------------------

async def test_an_upload_of_100000_parts_is_refused_without_stalling_the_loop(tmp_path, http):
    """100,000 empty parts before the file: 400 naming the limit of 2 parts, and the event loop never
    stalls for long meanwhile (it held it 2-3 s at a time, then stored the image)."""
    boundary = "b0undary"
    empty = f"--{boundary}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\r\n".encode()
    image = make_image("2.0.0", size=4096)
    last = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"many.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    body = empty * 100_000 + last
    gaps: list[float] = []

    async def ticker() -> None:
        before = time.monotonic()
        try:
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - before)
                before = now
        finally:
            gaps.append(time.monotonic() - before)

    async with board_app(tmp_path) as (url, _, _):
        tick = asyncio.create_task(ticker())
        try:
            async with http.post(f"{url}/api/firmware", data=io.BytesIO(body),
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}) as resp:
                status_code = resp.status
                answer = await resp.json()
        finally:
            tick.cancel()
            await asyncio.gather(tick, return_exceptions=True)
        assert status_code == 400 and answer["max_parts"] == 2 and "2 parts" in answer["detail"], answer
        assert max(gaps) < 0.5, f"the event loop stalled {max(gaps):.2f} s"
        async with http.get(f"{url}/api/firmware") as resp:
            assert (await resp.json())["images"] == []
        # the usual upload, file and name, still works
        form = _form(image, "x.bin")
        form.add_field("name", "renamed.bin")
        async with http.post(f"{url}/api/firmware", data=form) as resp:
            assert resp.status == 201 and (await resp.json())["name"] == "renamed.bin"


async def test_an_image_name_with_a_final_newline_is_refused(tmp_path, http):
    """`a.bin\\n` (sent as RFC 5987 `filename*=utf-8''a.bin%0A`) is not a name: 400, nothing stored (`$`
    matched before the newline, so it was stored and never listed)."""
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename*=utf-8''a.bin%0A\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + make_image() + f"\r\n--{boundary}--\r\n".encode()
    async with board_app(tmp_path) as (url, _, _):
        async with http.post(f"{url}/api/firmware", data=body,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}) as resp:
            assert resp.status == 400, await resp.text()
            assert "a.bin\\n" in (await resp.json())["detail"]
        async with http.get(f"{url}/api/firmware") as resp:
            assert (await resp.json())["images"] == []
    assert not list((tmp_path / "firmware").iterdir())
    store = FirmwareStore(tmp_path / "firmware")
    for bad in ("a.bin\n", "a.bin\r", "a.bin\x00", "../a.bin", ".a.bin", "a.bin\nb.bin"):
        with pytest.raises(ValueError):
            store.path(bad)
    assert store.path("a.bin").name == "a.bin"


# --- what a board reports ------------------------------------------------------------------------

HOSTILE_SETTINGS = {"brightness": "<img src=x onerror=alert(1)>", "contrast": 1e308, "saturation": {"a": {"b": 1}},
                    "hmirror": [True], "lamp": 50, "vflip": True}


async def test_reported_settings_out_of_range_are_dropped_and_counted(http, caplog):
    """HTML strings, 1e308 and objects in a status are not kept, stored or served; each is counted in
    /api/cameras `settings_dropped` and the settings route, with one log line per minute per camera."""
    async with running_server(None) as srv:
        ws = await connect_camera(srv.ws("evil"))
        try:
            await ws.send(json.dumps({"type": "hello", "camera_id": "evil", "firmware": "1.1.0"}))
            hostile = status(settings=HOSTILE_SETTINGS, max_fps=1e308, frame_size="<b>VGA</b>", quality=12)
            for _ in range(49):
                await ws.send(json.dumps(hostile))
            await ws.send(json.dumps({**hostile, "rssi": -1}))  # the last one
            await wait_for(lambda: (c := srv.server.hub.get("evil")) is not None and (c.status or {}).get("rssi") == -1,
                           what="the hostile statuses handled")
            async with http.get(f"{srv.http}/api/cameras/evil/settings") as resp:
                shown = await resp.json()
            assert shown["reported"] == {"lamp": 50, "vflip": True, "quality": 12}
            assert shown["reported_dropped"] == 50 * 6
            async with http.get(f"{srv.http}/api/cameras") as resp:
                camera = {c["id"]: c for c in await resp.json()}["evil"]
            assert camera["settings_dropped"] == 50 * 6
            row = await _stored_reported(srv, "evil", lambda row: row is not None)
            assert json.loads(row[0]) == {"lamp": 50, "vflip": True, "quality": 12}
        finally:
            await ws.close()
    lines = [r for r in caplog.records if "reported settings out of range" in r.getMessage()]
    assert len(lines) == 1 and "brightness" in lines[0].getMessage(), [r.getMessage() for r in lines]


class FloodingBoard(threading.Thread):
    """A board on its own thread (the websockets sync client) sending statuses as fast as TCP takes them,
    its settings changing in each."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.url, self.seconds = url, seconds
        self.sent = 0
        self.ws = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with websockets.sync.client.connect(self.url, compression=None, open_timeout=WAIT_S) as ws:
                self.ws = ws
                ws.send(json.dumps({"type": "hello", "camera_id": "flood", "firmware": "1.1.0"}))
                stop_at = time.monotonic() + self.seconds
                while time.monotonic() < stop_at:
                    n = self.sent + 1
                    ws.send(json.dumps(status(frames_sent=n, settings={"brightness": n % 5 - 2, "lamp": n % 101})))
                    self.sent = n
        except (OSError, websockets.ConnectionClosed) as exc:
            self.error = exc  # the test ends the connection while a send waits for TCP

    def end(self) -> None:
        """Cut the connection (a close would wait behind what the server has not read) and join."""
        if self.ws is not None:
            with contextlib.suppress(OSError):
                self.ws.socket.shutdown(socket.SHUT_RDWR)
        self.join(WAIT_S)


async def test_a_status_flood_is_paced_writes_at_most_once_a_second_and_control_answers(http):
    """A board sending statuses as fast as it can, its settings changing in each: it is read at about 20
    texts a second (counted in /api/cameras `texts_paced`), its reported settings are written at most about
    once a second (one write each before: 35,000 in 4 s) with the latest handled values winning, and
    /control answers fast meanwhile (1.3-1.7 s before)."""
    async with running_server(None) as srv:
        db = srv.server.database
        statements: list[str] = []
        await db.use(lambda conn: conn.set_trace_callback(
            lambda sql: statements.append(sql) if "SET reported = excluded.reported" in sql else None))
        handled: list[int] = []
        passing = [True]  # after the flood, what the listener still reads is not passed on: the values settle
        on_status = srv.server.ingest.on_status

        def counting(camera_id: str, st: dict) -> None:
            if passing[0]:
                handled.append(st.get("frames_sent", 0))
                on_status(camera_id, st)

        srv.server.ingest.on_status = counting
        board = FloodingBoard(srv.ws("flood"), seconds=4.0)
        started = time.monotonic()
        board.start()
        try:
            await wait_for(lambda: (c := srv.server.hub.get("flood")) is not None and c.connected, what="the board")
            control_times: list[float] = []
            while time.monotonic() < started + 3.5:
                await asyncio.sleep(0.2)
                began = time.monotonic()
                async with http.post(f"{srv.http}/api/cameras/flood/control", json={"contrast": 1}) as resp:
                    assert resp.status == 202, await resp.text()
                control_times.append(time.monotonic() - began)
            passing[0] = False
            elapsed = time.monotonic() - started
            async with http.get(f"{srv.http}/api/cameras") as resp:
                paced = {c["id"]: c for c in await resp.json()}["flood"]["texts_paced"]
            async with http.get(f"{srv.http}/api/cameras/flood/settings") as resp:
                latest = (await resp.json())["reported"]
            row = await _stored_reported(srv, "flood", lambda row: row is not None and json.loads(row[0]) == latest)
        finally:
            await asyncio.to_thread(board.end)
            await db.use(lambda conn: conn.set_trace_callback(None))
    assert board.sent > 1000, f"only {board.sent} statuses sent: not a flood"
    assert len(handled) <= 40 + 20 * elapsed + 20, f"{len(handled)} of {board.sent} statuses handled in {elapsed:.1f} s"
    assert paced > 0
    writes = len(statements)
    assert 1 <= writes <= elapsed + 3, f"{writes} writes of reported settings for {len(handled)} statuses"
    assert latest["lamp"] == handled[-1] % 101 and json.loads(row[0]) == latest, "the latest values win"
    assert max(control_times) < 1.0, control_times


async def _stored_reported(srv, camera_id: str, done, timeout: float = 5.0):
    """The camera's camera_settings row (reported) once `done(row)`, or the last one read after `timeout`."""
    db = srv.server.database
    deadline = time.monotonic() + timeout
    while True:
        row = await db.use(lambda conn: conn.execute("SELECT reported FROM camera_settings WHERE camera = ?",
                                                     (camera_id,)).fetchone())
        if done(row) or time.monotonic() > deadline:
            return row
        await asyncio.sleep(0.05)


async def test_reported_settings_waiting_for_their_write_are_written_at_stop(tmp_path):
    """Statuses within the second after a write wait for the next one, the latest winning; stopping writes
    what waits, so a restart shows the last values reported."""
    database = await opened_database(tmp_path)
    service = BoardService(tmp_path)
    await service.start(database)
    for lamp in (10, 20, 30):
        service.on_status("door", status(settings={"lamp": lamp}))
    await service.stop()
    await database.close()
    assert service.reported_writes == 2, "the first at once, the last two as one"
    database = await opened_database(tmp_path)
    again = BoardService(tmp_path)
    await again.start(database)
    try:
        assert again.settings("door")["reported"]["lamp"] == 30
    finally:
        await again.stop()
        await database.close()
