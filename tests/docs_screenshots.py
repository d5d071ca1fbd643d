"""`make docs-screenshots`: screenshots of each view of the page for the docs, from a running server.

camserver runs as a child process (tests/serverproc.py) with the shapes model, three simulated cameras
stream to it (two with the person scene, so real events and clips happen), and headless Chromium
(tests/browser.py) opens each view at desktop (1400x900) and phone (390x844) size. The PNGs are
reduced to a palette (the page is flat colours and the scene is drawn) and written into
docs/assets/screenshots/, which the docs' pages show. Run it again after changing the page.

    python tests/docs_screenshots.py [--out DIR] [--model PATH] [--timeout S]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from contextlib import AsyncExitStack, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import aiohttp  # noqa: E402

import browser as harness  # noqa: E402
from camserver.sim.scenes import PersonScene, SceneSource  # noqa: E402
from camserver.sim.simcam import SimCamera  # noqa: E402
from serverproc import ServerProcess, config_file  # noqa: E402

DESKTOP, PHONE = (1400, 900), (390, 844)
SHAPES = next((p for p in (ROOT.parent / "shared" / "testdata" / "shapes-yolo11n.pt",
                           ROOT.parent.parent / "shared" / "testdata" / "shapes-yolo11n.pt") if p.exists()), None)
CONFIG = """
[detect]
imgsz = 320
[cameras]
ids = ["door", "yard", "garage"]
[[events.zones]]
camera = "door"
name = "porch"
points = [[0.05, 0.55], [0.6, 0.55], [0.6, 0.98], [0.05, 0.98]]
"""
# each view: the hash route, what must be true before the picture is taken, which sizes
VIEWS = (
    ("live", "#/live", "[...document.querySelectorAll('.tile img')].length === 3 && "
     "[...document.querySelectorAll('.tile img')].every(i => i.naturalWidth > 0)", (DESKTOP, PHONE)),
    ("camera", "#/camera/door", "document.querySelector('.frame-large img') && "
     "document.querySelector('.frame-large img').naturalWidth > 0", (DESKTOP, PHONE)),
    ("review", "#/review", "document.querySelectorAll('.event-card img').length > 0 && "
     "[...document.querySelectorAll('.event-card img')].every(i => i.naturalWidth > 0)", (DESKTOP, PHONE)),
    ("zones", "#/zones/door", "document.querySelector('.frame-editor img') && "
     "document.querySelector('.frame-editor img').naturalWidth > 0", (DESKTOP, PHONE)),
    ("system", "#/system", "!!document.querySelector('#storage-meter')", (DESKTOP, PHONE)),
    ("settings", "#/settings", "!!document.querySelector('.users-table, .users-panel p')", (DESKTOP, PHONE)),
)
LIGHTBOX_READY = ("document.querySelector('dialog.lightbox') && document.querySelector('dialog.lightbox').open && "
                  "((document.querySelector('.lb-media video') && document.querySelector('.lb-media video').readyState >= 2)"
                  " || (document.querySelector('.lb-media img') && document.querySelector('.lb-media img').naturalWidth > 0))")


def shrink(path: Path, colours: int = 128) -> int:
    """Rewrite a screenshot as a palette PNG; returns its size in bytes."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    small.save(buf, "PNG", optimize=True)
    path.write_bytes(buf.getvalue())
    return len(buf.getvalue())


async def wait_for_events(base: str, timeout: float) -> str:
    """The id of an ended event with a snapshot and a clip, once there is one (several events by then)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(f"{base}/api/events?limit=50") as resp:
                events = (await resp.json())["events"] if resp.status == 200 else []
            done = [e for e in events if e.get("end_time") and e.get("has_snapshot") and e.get("has_clip")]
            if done and len(events) >= 2:
                return done[0]["id"]
            await asyncio.sleep(1.0)
    raise TimeoutError(f"no ended event with a clip within {timeout:.0f} s")


async def wait_for_person(base: str, camera: str, timeout: float = 60) -> None:
    """Until the camera's latest detections hold a person (so its picture shows one, with its box)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(f"{base}/api/cameras/{camera}/detections") as resp:
                found = (await resp.json()).get("detections", []) if resp.status == 200 else []
            if any(d.get("class_name") == "person" for d in found):
                return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"no person in front of {camera} within {timeout:.0f} s")


async def main(out: Path, model: Path, timeout: float) -> int:
    """Start the server and the cameras, take every view's screenshots, stop everything."""
    harness.SCREENSHOTS = out
    out.mkdir(parents=True, exist_ok=True)
    server = await ServerProcess.start("--config", config_file(CONFIG), "--model", str(model))
    cameras: list[asyncio.Task[None]] = []
    try:
        ws = f"ws://127.0.0.1:{server.ws_port}"
        for name, scene in (("door", PersonScene()), ("yard", PersonScene(walk_frames=120, pause_frames=60)),
                            ("garage", SceneSource())):
            cameras.append(asyncio.create_task(SimCamera(ws, name, scene, fps=8).run()))
        event = await wait_for_events(server.http, timeout)
        async with AsyncExitStack() as stack:
            page = await stack.enter_async_context(harness.chromium(f"{server.http}/#/live", size=DESKTOP))
            written = []
            for name, route, ready, sizes in VIEWS:
                if name in ("live", "camera"):
                    await wait_for_person(server.http, "door")
                await page.goto(f"{server.http}/{route}")
                await page.wait(ready, timeout=30, what=f"the {name} view")
                written += await page.screenshot(name, sizes=sizes, ready=ready)
            await page.goto(f"{server.http}/#/events/{event}")
            await page.wait(LIGHTBOX_READY, timeout=30, what="the lightbox")
            written += await page.screenshot("lightbox", sizes=(DESKTOP, PHONE), ready=LIGHTBOX_READY)
            await wait_for_person(server.http, "door")
            await page.goto(f"{server.http}/#/camera/door")
            camera_ready = VIEWS[1][2]
            await page.wait(camera_ready, timeout=30, what="the camera view")
            written += await page.screenshot("camera-dark", sizes=(DESKTOP,), ready=camera_ready, dark=True)
        for path in written:
            print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {shrink(path) // 1024} KB")
        return 0
    finally:
        for task in cameras:
            task.cancel()
        for task in cameras:
            with suppress(asyncio.CancelledError):
                await task
        await server.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "assets" / "screenshots")
    p.add_argument("--model", type=Path, default=SHAPES, help="default: ../shared/testdata/shapes-yolo11n.pt")
    p.add_argument("--timeout", type=float, default=180, help="seconds to wait for the first ended event")
    args = p.parse_args()
    if args.model is None or not args.model.exists():
        sys.exit("the shapes model is needed (../shared/testdata/shapes-yolo11n.pt, or --model PATH)")
    if harness.CHROMIUM is None:
        sys.exit("chromium is needed for the screenshots")
    sys.exit(asyncio.run(main(args.out, args.model, args.timeout)))
