"""Firmware uploads and the storage limits: an image past storage.max_mb is 413, one past the free space
above storage.min_free_mb is 507, both JSON and answered before the image is read (or written) whole."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from conftest import WAIT_S, running_server
from test_board import _form, board_app, make_image, upload


def _stored(folder: Path) -> list[str]:
    firmware = folder / "firmware"
    return sorted(p.name for p in firmware.iterdir()) if firmware.exists() else []


async def _stream_upload(url: str, image: bytes, send: int) -> tuple[int, dict, int]:
    """POST an upload chunked (no Content-Length) over a raw socket, sending only the first `send` bytes
    of the image and never the end: returns the status, the JSON body, and how many image bytes went out
    before the answer came."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    boundary = "b0undary"

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    try:
        writer.write((f"POST /api/firmware HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode())
        writer.write(chunk(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cam-2.0.0.bin\""
                           f"\r\nContent-Type: application/octet-stream\r\n\r\n".encode()))
        sent = 0
        answer = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
        while sent < send and not answer.done():
            writer.write(chunk(image[sent:sent + 16384]))
            await writer.drain()
            sent += 16384
            await asyncio.sleep(0.002)
        head = (await asyncio.wait_for(answer, WAIT_S)).decode()
        length = int(next(line.split(":", 1)[1] for line in head.split("\r\n")
                          if line.lower().startswith("content-length:")))
        body = await asyncio.wait_for(reader.readexactly(length), WAIT_S)
        return int(head.split(" ", 2)[1]), json.loads(body), sent
    finally:
        writer.close()


async def test_upload_past_storage_max_mb_is_413_json_before_it_is_written(tmp_path, http):
    """An image bigger than storage.max_mb is refused, declared (Content-Length) or streamed, and nothing is stored."""
    async with board_app(tmp_path, max_bytes=300_000) as (url, _sent, _service):
        resp = await upload(http, url, make_image("2.0.0", size=400_000))
        assert resp.status == 413
        assert resp.content_type == "application/json"
        # streamed without a length: refused once its bytes pass the limit, before the rest is sent
        status, body, sent = await _stream_upload(url, make_image("2.0.0", size=1_500_000), 1_500_000)
        assert status == 413 and body["error"] == "image refused" and body["max_size"] == 300_000
        assert sent < 1_000_000
        assert _stored(tmp_path) == []
        assert (await upload(http, url, make_image("2.0.0", size=200_000))).status == 201


async def test_upload_past_the_free_space_floor_is_507_json(tmp_path, http):
    """An image bigger than the room above storage.min_free_mb is 507 disk full; one that fits is stored."""
    room = {"bytes": 250_000}
    async with board_app(tmp_path, room=lambda: room["bytes"]) as (url, _sent, _service):
        async with http.post(f"{url}/api/firmware", data=_form(make_image("2.0.0", size=300_000), "cam-2.0.0.bin")) as resp:
            assert resp.status == 507
            body = await resp.json()
        assert body["error"] == "disk full" and body["room"] == 250_000
        status, body, sent = await _stream_upload(url, make_image("2.0.0", size=1_500_000), 1_500_000)
        assert status == 507 and body["error"] == "disk full" and sent < 1_000_000
        assert _stored(tmp_path) == []
        assert (await upload(http, url, make_image("2.0.0", size=200_000))).status == 201
        room["bytes"] = 0  # the disk filled since
        assert (await upload(http, url, make_image("2.1.0", size=20_000), "cam-2.1.0.bin")).status == 507
        assert _stored(tmp_path) == ["cam-2.0.0.bin"]


async def test_the_server_refuses_an_image_past_its_storage_max_mb(http):
    """Wired in the app: storage.max_mb = 1 refuses a 1.2 MB image that fits an OTA slot."""
    async with running_server(None, storage={"max_mb": 1}) as srv:
        resp = await upload(http, srv.http, make_image("2.0.0", size=1_200_000))
        assert resp.status == 413
        assert _stored(Path(srv.server.config.storage.dir)) == []
        assert (await upload(http, srv.http, make_image("2.0.0", size=100_000))).status == 201
