"""Soak run: N simulated cameras and M MJPEG viewers against camserver for minutes; flat is the goal.

Prints the server's RSS, open file descriptors, asyncio tasks and viewers every interval, then a
summary comparing the first and last quarter. Viewers come and go (each stays 10-60 s) so leaks
on connect/disconnect show up too. Not part of the test suite.

    python -m bench.soak --cameras 4 --viewers 20 --minutes 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path

import aiohttp

from tests.serverproc import ServerProcess
from camserver.sim.simcam import SceneSource, SimCamera


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


async def soak(args: argparse.Namespace) -> dict:
    server = await ServerProcess.start("--model", args.model, "--imgsz", str(args.imgsz))
    stop = asyncio.Event()
    cams = [SimCamera(f"ws://127.0.0.1:{server.ws_port}", f"soak-{i}", SceneSource(), fps=args.fps)
            for i in range(args.cameras)]
    tally = {"bytes": 0, "sessions": 0, "errors": 0}
    samples = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as session:
            cam_tasks = [asyncio.create_task(c.run()) for c in cams]
            urls = [f"{server.http}/cameras/soak-{i % args.cameras}/stream.mjpg" for i in range(args.viewers)]
            viewer_tasks = [asyncio.create_task(churning_viewer(session, u, stop, tally)) for u in urls]
            started = time.monotonic()
            print("t_s  rss_mib  fds  tasks  viewers  processed  dropped  stalls", flush=True)
            while time.monotonic() - started < args.minutes * 60:
                await asyncio.sleep(args.interval)
                async with session.get(f"{server.http}/healthz") as resp:
                    health = await resp.json()
                async with session.get(f"{server.http}/api/cameras") as resp:
                    cameras = await resp.json()
                rss, fds = server_memory_and_fds(server.proc.pid)
                sample = {
                    "t_s": round(time.monotonic() - started), "rss_mib": round(rss, 1), "fds": fds,
                    "tasks": health["tasks"], "viewers": health["viewers"],
                    "processed": sum(c["frames_processed"] for c in cameras),
                    "dropped": sum(c["frames_dropped"] for c in cameras), "stalls": health["detector_stalls"],
                }
                samples.append(sample)
                print("  ".join(str(v) for v in sample.values()), flush=True)
            stop.set()
            for t in cam_tasks:
                t.cancel()
            await asyncio.gather(*viewer_tasks, *cam_tasks, return_exceptions=True)
    finally:
        rc = await server.stop(timeout=10)
    quarter = max(1, len(samples) // 4)
    first, last = samples[:quarter], samples[-quarter:]

    def mean(rows: list[dict], key: str) -> float:
        return round(statistics.mean(r[key] for r in rows), 1)

    summary = {
        "minutes": args.minutes, "cameras": args.cameras, "viewers": args.viewers, "model": args.model,
        "rss_mib_first_quarter": mean(first, "rss_mib"), "rss_mib_last_quarter": mean(last, "rss_mib"),
        "rss_mib_max": max(s["rss_mib"] for s in samples),
        "fds_first_quarter": mean(first, "fds"), "fds_last_quarter": mean(last, "fds"),
        "tasks_first_quarter": mean(first, "tasks"), "tasks_last_quarter": mean(last, "tasks"),
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
    p.add_argument("--json", help="also write samples and summary to this file")
    args = p.parse_args()
    result = asyncio.run(soak(args))
    print(json.dumps(result["summary"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
