"""`make demo`: camserver and one simulated camera in one process; Ctrl-C stops both.

Takes the same flags as `python -m camserver`. Without internet the default yolo11n.pt cannot
download, so the demo falls back to yolo11n.yaml (the real network with random weights) and says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
from contextlib import suppress

from ..app import CamServer
from ..cli import run_command
from ..config import Config
from ..detect import ModelLoadError
from .simcam import SceneSource, SimCamera

log = logging.getLogger(__name__)

FALLBACK_MODEL = "yolo11n.yaml"


async def start_server(config: Config) -> CamServer:
    """Start camserver; if the model cannot load, explain and start with random weights instead."""
    try:
        server = CamServer(config)
        await server.start()
        return server
    except ModelLoadError as exc:
        if config.detect.model == FALLBACK_MODEL or config.passthrough:
            raise
        print(
            f"demo: {exc}\n"
            f"demo: using {FALLBACK_MODEL} instead: the real YOLO11n network with random weights, so the\n"
            "demo: boxes (if any) are meaningless. With internet, yolo11n.pt downloads on first use and\n"
            "demo: detects real objects.",
            file=sys.stderr,
        )
    server = CamServer(dataclasses.replace(config, detect=dataclasses.replace(config.detect, model=FALLBACK_MODEL)))
    await server.start()
    return server


async def run_demo(config: Config) -> None:
    """Serve with one simulated camera until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await start_server(config)
    camera = SimCamera(f"ws://127.0.0.1:{server.ws_port}", "demo", SceneSource(), fps=10)
    camera_task = asyncio.create_task(camera.run())
    base = f"http://localhost:{server.http_port}"
    print(f"demo: open {base}/  (the stream alone: {base}/cameras/demo/stream.mjpg); Ctrl-C stops", flush=True)
    try:
        await stop.wait()
    finally:
        camera_task.cancel()
        with suppress(asyncio.CancelledError):
            await camera_task
        await server.stop()
    print("demo: stopped", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m camserver.sim.demo`."""
    return run_command(argv, run_demo, "demo")


if __name__ == "__main__":
    raise SystemExit(main())
