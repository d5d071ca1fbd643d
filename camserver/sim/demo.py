"""`make demo`: camserver and one simulated camera in one process; Ctrl-C stops both.

Takes the same flags as `python -m camserver`. Without internet the default yolo11n.pt cannot
download, so the demo falls back to yolo11n.yaml (the real network with random weights) and says so.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ..app import CamServer
from ..run import RunResult, run
from ..cli import run_command
from ..config import Config
from ..detect import ModelLoadError
from .simcam import SceneSource, SimCamera

FALLBACK_MODEL = "yolo11n.yaml"


async def simulated_camera(server: CamServer) -> None:
    """One simulated camera streaming to `server` until cancelled."""
    base = f"http://localhost:{server.http_port}"
    print(f"demo: open {base}/  (the stream alone: {base}/cameras/demo/stream.mjpg); Ctrl-C stops", flush=True)
    await SimCamera(f"ws://127.0.0.1:{server.ws_port}", "demo", SceneSource(), fps=10).run()


async def run_demo(config: Config, ports_file: Path | None = None) -> RunResult:
    """Serve with one simulated camera until SIGINT/SIGTERM; random weights if the model cannot load."""
    try:
        result = await run(config, ports_file, simulated_camera)
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
        fallback = dataclasses.replace(config, detect=dataclasses.replace(config.detect, model=FALLBACK_MODEL))
        result = await run(fallback, ports_file, simulated_camera)
    print("demo: stopped", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m camserver.sim.demo`."""
    return run_command(argv, run_demo, "demo")


if __name__ == "__main__":
    raise SystemExit(main())
