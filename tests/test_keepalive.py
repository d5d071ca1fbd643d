"""Keepalive against a client that answers pings the way the ESP32 WebSocket library does."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

from websockets.asyncio.server import serve
from websockets.frames import Close, Frame, Opcode

from conftest import WAIT_S, connect_camera, make_jpeg, running_server, wait_for


class TruncatingPongClient:
    """A raw WebSocket client that answers each ping with the payload cut at its first NUL byte.

    ArduinoWebsockets 0.5.4 copies the ping payload through an Arduino String before echoing it,
    and a String stops at NUL (gilmaimon/ArduinoWebsockets#151); this mimics exactly that.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.answer_pings = True  # False: a board that hangs but keeps its TCP connection
        self.pings: list[bytes] = []
        self.close_code: int | None = None  # from the close frame the server sent, if any
        self.closed = asyncio.Event()

    @classmethod
    async def connect(cls, port: int, path: str) -> TruncatingPongClient:
        """Open the TCP connection and complete the WebSocket handshake by hand."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, opcode: Opcode, data: bytes) -> None:
        """Send one masked frame, as a client must."""
        self.writer.write(Frame(opcode, data).serialize(mask=True))

    async def run(self) -> None:
        """Read frames until the connection ends, answering pings like the ESP32 library."""
        try:
            while True:
                b0, b1 = await self.reader.readexactly(2)
                length = b1 & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
                payload = await self.reader.readexactly(length)  # server frames are not masked
                opcode = Opcode(b0 & 0x0F)
                if opcode is Opcode.PING:
                    self.pings.append(payload)
                    if self.answer_pings:
                        self.send(Opcode.PONG, payload.split(b"\0", 1)[0])
                elif opcode is Opcode.CLOSE:
                    self.close_code = Close.parse(payload).code
                    self.send(Opcode.CLOSE, payload)
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writer.close()
            self.closed.set()


async def test_truncated_pongs_drop_a_camera_under_random_byte_pings():
    """The mimic is faithful: the websockets library's own keepalive (random payloads) drops it."""

    async def handler(ws):
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, ping_interval=0.01, ping_timeout=1.0) as server:
        client = await TruncatingPongClient.connect(server.sockets[0].getsockname()[1], "/")
        task = asyncio.create_task(client.run())
        await asyncio.wait_for(client.closed.wait(), 30)  # ~1.55% of pings hold a NUL: ~0.7 s on average
        await task
    assert any(b"\0" in p for p in client.pings)


async def test_camera_answering_like_the_esp32_library_stays_connected():
    """Through 500 fast pings a client that cuts pongs at NUL stays connected; every ping is NUL-free."""
    async with running_server(None, ingest={"ping_interval_s": 0.01, "ping_timeout_s": 1.0}) as srv:
        client = await TruncatingPongClient.connect(srv.server.ws_port, "/ws/esp32")
        task = asyncio.create_task(client.run())
        camera = srv.server.hub.get("esp32")
        assert camera is not None and camera.connected
        await wait_for(lambda: len(client.pings) >= 500 or client.closed.is_set(), timeout=60, what="500 pings")
        assert not client.closed.is_set(), f"dropped after {len(client.pings)} pings (close {client.close_code})"
        assert camera.connected and not srv.server.ingest.closes_of("esp32")
        assert all(p and b"\0" not in p for p in client.pings)
        assert len(set(client.pings)) == len(client.pings)  # unique: each pong matches its own ping
        client.send(Opcode.CLOSE, Close(1000, "bye").serialize())
        await asyncio.wait_for(client.closed.wait(), WAIT_S)
        await task
        await wait_for(lambda: not camera.connected, what="camera offline")
        assert srv.server.ingest.closes_of("esp32") == {"camera": 1}


async def test_unanswered_pings_close_1011_the_camera_reads_the_code():
    """A camera that answers no ping is closed with 1011 in a closing handshake it can read; counted as keepalive."""
    async with running_server(None, ingest={"ping_interval_s": 0.1, "ping_timeout_s": 0.2}) as srv:
        client = await TruncatingPongClient.connect(srv.server.ws_port, "/ws/deaf")
        client.answer_pings = False
        await client.run()
        assert client.close_code == 1011  # the close frame reached the client before the TCP close
        camera = srv.server.hub.get("deaf")
        await wait_for(lambda: not camera.connected, what="camera offline")
        assert srv.server.ingest.closes_of("deaf") == {"keepalive": 1}


async def test_close_reasons_are_counted_per_camera(http):
    """/api/cameras counts closes per reason: too_big, bad_frames, replaced, camera."""
    async with running_server(None, ingest={"max_frame_bytes": 2048, "max_bad_frames": 2}) as srv:
        big = await connect_camera(srv.ws("c"), max_size=None)
        await big.send(make_jpeg(1, 640, 480, noise=True))
        await asyncio.wait_for(big.wait_closed(), WAIT_S)
        bad = await connect_camera(srv.ws("c"))
        for _ in range(2):
            await bad.send(b"not a jpeg")
        await asyncio.wait_for(bad.wait_closed(), WAIT_S)
        assert bad.close_code == 1008
        first = await connect_camera(srv.ws("c"))
        second = await connect_camera(srv.ws("c"))
        await asyncio.wait_for(first.wait_closed(), WAIT_S)
        await second.close()
        await wait_for(lambda: sum(srv.server.ingest.closes_of("c").values()) == 4, what="four closes counted")
        async with http.get(f"{srv.http}/api/cameras") as resp:
            (summary,) = await resp.json()
        assert summary["closes"] == {"too_big": 1, "bad_frames": 1, "replaced": 1, "camera": 1}
