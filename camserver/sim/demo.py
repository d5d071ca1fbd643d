"""`make demo`: camserver and one simulated camera in one process; Ctrl-C stops both.

Takes the same flags as `python -m camserver`. The camera shows the simulator's person scene: a
figure walks across every 25 s, drawn as the figures ../shared/testdata/shapes-yolo11n.pt was
trained on, so `make demo MODEL=../shared/testdata/shapes-yolo11n.pt` gives an event within
seconds. Without internet and without --model, the default yolo11n.pt cannot download and the demo
runs yolo11n.yaml (random weights) and says so, as `python -m camserver` does (detect/fallback.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..app import CamServer
from ..run import RunResult, run
from ..cli import run_command
from ..config import Config
from ..config.writeback import ConfigFile
from .scenes import PersonScene
from .simcam import SimCamera


async def simulated_camera(server: CamServer) -> None:
    """One simulated camera streaming the person scene to `server` until cancelled."""
    base = f"http://localhost:{server.http_port}"
    print(f"demo: open {base}/  (the stream alone: {base}/cameras/demo/stream.mjpg); Ctrl-C stops", flush=True)
    await SimCamera(f"ws://127.0.0.1:{server.ws_port}", "demo", PersonScene(), fps=10).run()


async def run_demo(config: Config, ports_file: Path | None = None, *, model_fallback: bool = False,
                   config_file: ConfigFile | None = None) -> RunResult:
    """Serve with one simulated camera until SIGINT/SIGTERM."""
    result = await run(config, ports_file, simulated_camera, model_fallback=model_fallback, config_file=config_file)
    print("demo: stopped", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m camserver.sim.demo`."""
    return run_command(argv, run_demo, "demo")


if __name__ == "__main__":
    raise SystemExit(main())
