"""Soak run: N simulated cameras and M MJPEG viewers against camserver for minutes; flat is the goal.

Prints the server's RSS, open file descriptors, asyncio tasks and viewers every interval, then a
summary comparing the first, middle and last quarter. Viewers come and go (each stays 10-60 s) so
leaks on connect/disconnect show up too. Not part of the test suite.

    python -m bench.soak --cameras 4 --viewers 20 --minutes 15

`--abuse` adds, all the while: a camera sending the 84,000-scan decode bomb at 2 fps, 500 HTTP
sockets that never send a request (reopened as the server closes them), 20 event-stream clients
that never read (the server ends a stream after 2 minutes here, `http.event_stream_max_s`, and
they come back), two webhook receivers that never answer, and an MQTT broker (mosquitto) that
restarts every 2 minutes; the cameras show the person scene, so that events (and webhooks, MQTT
messages) happen. It reports each normal camera's share of frames streamed and detected.

    python -m bench.soak --abuse --model ../shared/testdata/shapes-yolo11n.pt --minutes 15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import select
import socket
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.hooks import receiver
from tests.serverproc import ServerProcess
from camserver.sim.scenes import PersonScene
from camserver.sim.simcam import SceneSource, SimCamera

IDLE_SOCKETS = 500
SSE_NON_READERS = 20
STALL_S = 30  # an event-stream non-reader looks at its socket this often (the server drops it after 10 s)
BROKER_RESTART_S = 120.0


def server_memory_and_fds(pid: int) -> tuple[float, int]:
    """VmRSS in MiB and the number of open file descriptors of a process (Linux /proc)."""
    rss_kib = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
    return rss_kib / 1024, len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def churning_viewer(session: aiohttp.ClientSession, url: str, stop: asyncio.Event, tally: dict) -> None:
    """Watch a stream for 10-60 s, leave, come back; until `stop`."""
    while not stop.is_set():
        stay = random.uniform(10, 60)
        try:
            async with session.get(url) as resp:
                ends = time.monotonic() + stay
                while time.monotonic() < ends and not stop.is_set():
                    chunk = await resp.content.read(65536)
                    if not chunk:
                        break
                    tally["bytes"] += len(chunk)
        except aiohttp.ClientError:
            tally["errors"] += 1
            await asyncio.sleep(1)
        tally["sessions"] += 1


async def idle_sockets(port: int, n: int, stop: asyncio.Event, tally: dict) -> None:
    """n connections to the viewer port that never send a request; each is opened again once the server closes it."""

    async def one() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                tally["idle_refused"] += 1
                await asyncio.sleep(1)
                continue
            try:
                await reader.read()  # until the server closes it
                tally["idle_closed"] += 1
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

    await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)


async def sse_non_readers(port: int, n: int, stop: asyncio.Event, tally: dict) -> None:
    """n clients that open the event stream and do not read; again once the server drops them.

    A raw socket with a small receive buffer, so that what the server sends fills it and the
    server sees a client that does not read (for far longer than http.viewer_write_timeout_s). A
    hang-up that reaches it is seen through poll() (POLLRDHUP, POLLHUP, POLLERR) without reading;
    but the server's FIN waits behind the bytes a full window holds back, so every STALL_S the
    client takes what is waiting once, and sees the end of the stream if it came.
    """
    loop = asyncio.get_running_loop()
    hung_up = select.POLLRDHUP | select.POLLHUP | select.POLLERR

    def ended(sock: socket.socket) -> bool:
        """Take what waits, without blocking: whether the server closed the connection."""
        try:
            while sock.recv(65536):
                pass
            return True  # b"": the end of the stream
        except BlockingIOError:
            return False
        except ConnectionError:
            return True

    async def one() -> None:
        while not stop.is_set():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                await loop.sock_connect(sock, ("127.0.0.1", port))
                await loop.sock_sendall(sock, b"GET /api/events/stream HTTP/1.1\r\nHost: soak\r\n\r\n")
                poller = select.poll()
                poller.register(sock, hung_up)
                stalled = 0
                while not stop.is_set():
                    await asyncio.sleep(1)
                    stalled += 1
                    if poller.poll(0) or (stalled % STALL_S == 0 and ended(sock)):
                        tally["sse_dropped"] += 1
                        break
            except OSError:
                await asyncio.sleep(1)
            finally:
                sock.close()

    await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)


async def bomber(url: str, stop: asyncio.Event, tally: dict) -> None:
    """The decode bomb at 2 fps, reconnecting as a camera would."""
    import websockets

    from tests.hostile import scan_bomb

    bomb = scan_bomb()
    while not stop.is_set():
        try:
            async with websockets.connect(url, compression=None, max_size=None) as ws:
                while not stop.is_set():
                    await ws.send(bomb)
                    tally["bombs"] += 1
                    await asyncio.sleep(0.5)
        except (OSError, websockets.WebSocketException):
            await asyncio.sleep(1)


async def hang(request: web.Request) -> web.Response:
    """A webhook receiver's handler that takes the request and never answers."""
    await asyncio.sleep(3600)
    return web.Response()


class RestartingBroker:
    """mosquitto on a free port, killed and started again every BROKER_RESTART_S."""

    def __init__(self, folder: Path) -> None:
        import shutil
        import socket

        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser root\n")
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(self.binary, "-c", str(self.conf),
                                                         stdout=asyncio.subprocess.DEVNULL,
                                                         stderr=asyncio.subprocess.DEVNULL)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def keep_restarting(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), BROKER_RESTART_S)
            except TimeoutError:
                await self.kill()
                await asyncio.sleep(2)
                await self.start()
                self.restarts += 1


async def soak(args: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="camserver-soak-"))
    config_lines = [f'[storage]\ndir = "{folder / "data"}"']
    receivers = contextlib.AsyncExitStack()  # the hanging webhook receivers
    broker = None
    if args.abuse:
        broker = RestartingBroker(folder)
        await broker.start()
        hooks = [await receivers.enter_async_context(receiver(hang, shutdown_timeout=0.1)) for _ in range(2)]
        config_lines += ["[http]\nmax_connections = 2048\nevent_stream_max_s = 120", f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}']
        config_lines += [f'[[webhooks]]\nurl = "{url}"' for url in hooks]
    (folder / "soak.toml").write_text("\n".join(config_lines) + "\n")
    server = await ServerProcess.start("--config", str(folder / "soak.toml"), "--model", args.model,
                                       "--imgsz", str(args.imgsz), cwd=folder)
    stop = asyncio.Event()
    scene = PersonScene if args.abuse else SceneSource
    cams = [SimCamera(f"ws://127.0.0.1:{server.ws_port}", f"soak-{i}", scene(), fps=args.fps)
            for i in range(args.cameras)]
    tally = {"bytes": 0, "sessions": 0, "errors": 0, "idle_closed": 0, "idle_refused": 0, "sse_dropped": 0,
             "bombs": 0}
    samples = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as session:
            cam_tasks = [asyncio.create_task(c.run()) for c in cams]
            if args.abuse:
                assert broker is not None
                cam_tasks += [
                    asyncio.create_task(bomber(f"ws://127.0.0.1:{server.ws_port}/ws/bomb", stop, tally)),
                    asyncio.create_task(idle_sockets(server.http_port, IDLE_SOCKETS, stop, tally)),
                    asyncio.create_task(sse_non_readers(server.http_port, SSE_NON_READERS, stop, tally)),
                    asyncio.create_task(broker.keep_restarting(stop)),
                ]
            urls = [f"{server.http}/cameras/soak-{i % args.cameras}/stream.mjpg" for i in range(args.viewers)]
            viewer_tasks = [asyncio.create_task(churning_viewer(session, u, stop, tally)) for u in urls]
            started = time.monotonic()
            print("t_s  rss_mib  fds  tasks  viewers  processed  dropped  stalls  http_connections", flush=True)
            last_cameras: list[dict] = []
            while time.monotonic() - started < args.minutes * 60:
                await asyncio.sleep(args.interval)
                async with session.get(f"{server.http}/healthz") as resp:
                    health = await resp.json()
                async with session.get(f"{server.http}/api/cameras") as resp:
                    cameras = await resp.json()
                rss, fds = server_memory_and_fds(server.proc.pid)
                normal = [c for c in cameras if c["id"].startswith("soak-")]
                sample = {
                    "t_s": round(time.monotonic() - started), "rss_mib": round(rss, 1), "fds": fds,
                    "tasks": health["tasks"], "viewers": health["viewers"],
                    "processed": sum(c["frames_processed"] for c in normal),
                    "dropped": sum(c["frames_dropped"] for c in normal), "stalls": health["detector_stalls"],
                    "http_connections": health.get("http_connections"),
                }
                last_cameras = normal
                samples.append(sample)
                print("  ".join(str(v) for v in sample.values()), flush=True)
            stop.set()
            for t in cam_tasks:
                t.cancel()
            await asyncio.gather(*viewer_tasks, *cam_tasks, return_exceptions=True)
    finally:
        rc = await server.stop(timeout=20)
        await receivers.aclose()
        if broker is not None:
            await broker.kill()
    quarter = max(1, len(samples) // 4)
    first, last = samples[:quarter], samples[-quarter:]
    middle = samples[len(samples) // 2 - quarter // 2: len(samples) // 2 - quarter // 2 + quarter] or first

    def mean(rows: list[dict], key: str) -> float:
        return round(statistics.mean(r[key] for r in rows), 1)

    summary = {
        "minutes": args.minutes, "cameras": args.cameras, "viewers": args.viewers, "model": args.model,
        "abuse": args.abuse,
        "rss_mib_first_middle_last": [mean(first, "rss_mib"), mean(middle, "rss_mib"), mean(last, "rss_mib")],
        "rss_mib_max": max(s["rss_mib"] for s in samples),
        "fds_first_middle_last": [mean(first, "fds"), mean(middle, "fds"), mean(last, "fds")],
        "tasks_first_middle_last": [mean(first, "tasks"), mean(middle, "tasks"), mean(last, "tasks")],
        "normal_cameras_streamed_share": [round(c["frames_processed"] / max(1, c["frames_received"]), 3)
                                          for c in last_cameras],
        "normal_cameras_handled_share": [round((c["frames_processed"] + c["frames_dropped"]) /
                                               max(1, c["frames_received"]), 3) for c in last_cameras],
        "normal_cameras_detected": [c["frames_detected"] for c in last_cameras],
        "abuse_tally": {k: v for k, v in tally.items() if k not in ("bytes", "sessions", "errors")},
        "broker_restarts": broker.restarts if broker else 0,
        "frames_processed": samples[-1]["processed"], "viewer_sessions": tally["sessions"],
        "viewer_errors": tally["errors"], "viewer_mib": round(tally["bytes"] / 2**20),
        "server_exit_code": rc,
    }
    return {"summary": summary, "samples": samples}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--viewers", type=int, default=20)
    p.add_argument("--minutes", type=float, default=15)
    p.add_argument("--interval", type=float, default=30, help="seconds between samples")
    p.add_argument("--fps", type=float, default=5)
    p.add_argument("--model", default="yolo11n.yaml")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--abuse", action="store_true", help="the mixed abuse of the hardening issue, all the while")
    p.add_argument("--json", help="also write samples and summary to this file")
    args = p.parse_args()
    if Path(args.model).exists():
        args.model = str(Path(args.model).resolve())  # the server runs in a folder of its own
    result = asyncio.run(soak(args))
    print(json.dumps(result["summary"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
