"""Slow-link benchmark: MJPEG viewers that read at a fixed byte rate, and how far behind live they fall.

One camera sends VGA frames at F fps to the server (`--model none`, so frames pass untouched);
each throttled reader reads the stream at a fraction of its byte rate through a socket with a
small receive buffer, like a phone on a weak link, and notes for every part how many frames
behind the camera's newest it is.

    python -m bench.slowlink --fps 10 --rates 0.5,0.8,1.5 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from camserver.config.tables import RECORD_MODES

SEQ_RE = re.compile(rb"X-Frame-Seq: (\d+)\r\n")
RCVBUF = 8 * 1024  # a small receive window, as on a congested mobile link


@dataclass
class ThrottledReader:
    """Reads an MJPEG URL over a raw socket at `rate` bytes/s, recording each live part's lag."""

    host: str
    port: int
    path: str
    rate: float
    newest: Callable[[], int]  # the camera's newest frame sequence number, right now
    lags: list[int] = field(default_factory=list)  # frames behind live, one per live part received
    parts: int = 0
    received: int = 0

    async def run(self, seconds: float) -> None:
        """Read for `seconds`, then close."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        writer.write(f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        started = time.monotonic()
        buf = b""
        try:
            while (now := time.monotonic()) - started < seconds:
                wait = started + self.received / self.rate - now
                if wait > 0:
                    await asyncio.sleep(wait)  # the link's pace
                data = await asyncio.wait_for(reader.read(1024), seconds)
                if not data:
                    break
                self.received += len(data)
                buf += data
                end = 0
                for match in SEQ_RE.finditer(buf):
                    self._part(int(match[1]))
                    end = match.end()
                buf = buf[end:][-32:]  # a header cut in two is found once the rest arrives
        finally:
            writer.close()

    def _part(self, seq: int) -> None:
        if seq > 0:
            self.parts += 1
            self.lags.append(max(0, self.newest() - seq))


def summary(reader: ThrottledReader, seconds: float, fps: float) -> dict:
    """fps received and lag figures (in seconds) over the second half of the run."""
    lags = reader.lags[len(reader.lags) // 2 :] or [0]
    return {
        "rate_kBps": round(reader.rate / 1000, 1),
        "fps_received": round(reader.parts / seconds, 2),
        "lag_s_median": round(statistics.median(lags) / fps, 2),
        "lag_s_max": round(max(lags) / fps, 2),
    }


async def main_async(args: argparse.Namespace) -> list[dict]:
    import websockets

    from bench.capacity import encode_cycle
    from tests.serverproc import ServerProcess, config_file

    frames = encode_cycle()
    frame_bytes = statistics.mean(len(f) for f in frames)
    stream_rate = frame_bytes * args.fps
    print(json.dumps({"frame_bytes": round(frame_bytes), "stream_kBps": round(stream_rate / 1000, 1)}), flush=True)
    server = await ServerProcess.start("--model", "none", "--config", config_file(f'[record]\nmode = "{args.record}"\n'))
    newest = 0
    stop = asyncio.Event()

    async def camera() -> None:
        nonlocal newest
        async with websockets.connect(server.ws("slow"), compression=None, max_size=None) as ws:
            next_at = time.monotonic()
            while not stop.is_set():
                await ws.send(frames[newest % len(frames)])
                newest += 1  # the server numbers this camera's frames 1, 2, ...
                next_at += 1 / args.fps
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    try:
        cam = asyncio.create_task(camera())
        await asyncio.sleep(1)
        readers = [
            ThrottledReader("127.0.0.1", server.http_port, "/cameras/slow/stream.mjpg", share * stream_rate, lambda: newest)
            for share in args.rates
        ]
        await asyncio.gather(*(r.run(args.seconds) for r in readers))
        stop.set()
        await cam
    finally:
        await server.stop()
    results = [{"share_of_stream": share, **summary(r, args.seconds, args.fps)} for share, r in zip(args.rates, readers)]
    for res in results:
        print(json.dumps(res), flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 0.8, 1.5],
                   help="reader byte rates as shares of the stream's byte rate")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--record", choices=RECORD_MODES, default="events", help="record.mode (events: the default)")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
