"""Viewers on slow links see fresh frames; viewers that stop reading are dropped within the write timeout."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import time

import pytest

from bench.capacity import encode_cycle
from bench.slowlink import ThrottledReader
from conftest import connect_camera, mjpeg, running_server, wait_for

FPS = 10


@pytest.fixture(scope="module")
def vga_frames() -> list[bytes]:
    """Real VGA camera-like JPEGs (about 12 KB each)."""
    return encode_cycle()[:40]


@contextlib.asynccontextmanager
async def camera_sending(srv, camera_id: str, frames: list[bytes], fps: float):
    """A camera sending `frames` in a loop at `fps`; yields a function giving the newest sequence number sent."""
    ws = await connect_camera(srv.ws(camera_id))
    sent = 0
    stop = asyncio.Event()

    async def run():
        nonlocal sent
        next_at = time.monotonic()
        while not stop.is_set():
            await ws.send(frames[sent % len(frames)])
            sent += 1
            next_at += 1 / fps
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    task = asyncio.create_task(run())
    try:
        yield lambda: sent
    finally:
        stop.set()
        await task
        await ws.close()


async def test_throttled_reader_stays_within_a_second_of_live(vga_frames):
    """A reader at 80% of the stream's byte rate through a small receive window: lag stays under 1 s for 20 s, >= 1 fps."""
    rate = 0.8 * statistics.mean(map(len, vga_frames)) * FPS
    async with running_server(None) as srv, camera_sending(srv, "slow", vga_frames, FPS) as newest:
        await wait_for(lambda: newest() >= 2, what="camera sending")
        reader = ThrottledReader("127.0.0.1", srv.server.http_port, "/cameras/slow/stream.mjpg", rate, newest)
        await reader.run(seconds=20)
    assert reader.parts >= 20, reader.parts  # at least 1 fps
    late = reader.lags[len(reader.lags) // 4 :]  # after the first seconds
    assert max(late) <= FPS, f"fell {max(late)} frames behind live"  # within 1 s


def send_queue_bytes(server_port: int, peer_ports: set[int]) -> dict[int, int]:
    """Send-Q of the server's sockets towards `peer_ports`, from `ss -tn`."""
    out = subprocess.run(["ss", "-tnH", "state", "established", f"sport = :{server_port}"],
                         capture_output=True, text=True, check=True).stdout
    queues = {}
    for line in out.splitlines():
        fields = line.split()  # Recv-Q Send-Q Local:Port Peer:Port
        peer_port = int(fields[3].rsplit(":", 1)[1])
        if peer_port in peer_ports:
            queues[peer_port] = int(fields[1])
    return queues


async def test_viewers_that_never_read_are_dropped_others_keep_their_fps(http, vga_frames):
    """3 viewers that never read: kernel queues stay under 4 frames, gone within write timeout + 2 s; another viewer keeps >= 90% fps."""
    timeout_s = 2.0
    frame_bytes = max(map(len, vga_frames))
    async with running_server(None, http={"viewer_write_timeout_s": timeout_s}) as srv, camera_sending(
        srv, "cam", vga_frames, 20
    ) as newest:
        await wait_for(lambda: newest() >= 2, what="camera sending")
        async with mjpeg(http, f"{srv.http}/cameras/cam/stream.mjpg") as good:
            await good.next_live()
            stuck = []
            for _ in range(3):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", srv.server.http_port))
                sock.sendall(b"GET /cameras/cam/stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
                stuck.append(sock)
            connected_at = time.monotonic()
            ports = {s.getsockname()[1] for s in stuck}
            viewers = srv.server.viewer_app
            await wait_for(lambda: viewers.viewers_total == 4, what="4 viewers")
            first, received, peak = newest(), 0, 0
            with_ss = shutil.which("ss") is not None
            while viewers.viewers_total > 1:
                assert time.monotonic() - connected_at < timeout_s + 2, "stuck viewers still connected"
                await good.next_live()
                received += 1
                if with_ss:
                    peak = max([peak, *send_queue_bytes(srv.server.http_port, ports).values()])
            gone_after = time.monotonic() - connected_at
            sent = newest() - first
            for sock in stuck:
                sock.close()
    assert gone_after < timeout_s + 2, gone_after
    assert received >= 0.9 * sent, (received, sent)
    if with_ss:
        assert peak < 4 * frame_bytes, (peak, frame_bytes)
