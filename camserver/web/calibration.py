"""POST/GET /api/detector/calibrate: INT8 calibration on this installation's own frames, from the admin API.

POST is an admin's write (writes.py's guard: 401 without a credential, 403 with a viewer's). It starts one
job in the background and answers 202 with its id; a second POST while one runs gets 409, and so does a
model or runtime that cannot be calibrated; without nncf the answer is 501, naming the `int8` extra.
GET gives the job's state: idle, collecting, quantizing, done or failed, with a one-line reason, the
frames used and the seconds elapsed.

Collecting: what the command line takes by default (detect/calibrate.py's gathered_frames): the event
snapshots under storage.dir and frames decoded from the recordings there (detect/recorded.py: one from the
middle of each chosen file, over the cameras and the days recorded; the snapshots at most half), filled up
with the cameras' live frames, one per camera every SAMPLE_S (a new frame only), for at most COLLECT_S, so
the set spreads over cameras and time. At most MAX_FRAMES (the body's `frames` asks for fewer); each frame
is written to a temporary folder as it comes, so memory holds one frame at a time. Where no frame exists
at all, the simulator's synthetic scenes are used.

Quantizing runs `python -m camserver.detect.calibrate` in a child process at a lower CPU priority (nice
10): NNCF never runs on the event loop nor holds this process's GIL, so cameras and viewers keep their
rate. On done, the precision tuner (detect.precision auto) measures every candidate again with the INT8
model, which may still lose: the status says which won and why.

The collection's span, the child's time limit and the elapsed seconds run on the monotonic clock: a step of
the wall clock (a suspend, a late NTP sync) neither ends nor stretches them (tests/test_calibration_steps.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from aiohttp import web

from ..detect.calibrate import gathered_frames
from ..jsonbody import read_json
from ..logsafe import printable

MAX_FRAMES = 300  # the most frames one calibration uses (the "a few hundred")
SAMPLE_S = 0.2  # one live frame per camera at most this often
COLLECT_S = 60.0  # live frames are gathered for at most this long
QUANTIZE_S = 900.0  # the child process is killed past this
NICE = 10
CALIBRATOR = "camserver.detect.calibrate"  # the module the child process runs (python -m)

log = logging.getLogger(__name__)

Frames = Callable[[], list[tuple[str, int, bytes]]]  # each camera's (id, sequence number, latest JPEG)


def nncf_installed() -> bool:
    """Whether nncf (the `int8` extra) can be imported."""
    return importlib.util.find_spec("nncf") is not None


class CalibrationApi:
    """The calibration job (one at a time) and its routes.

    Args:
        detect: the detect config (model, imgsz, cache_dir).
        snapshots: the folder whose images come first (storage.dir: the event snapshots).
        frames: the cameras' latest frames.
        tuner: the precision tuner (detect.precision auto), or None.
    """

    def __init__(self, detect: Any, snapshots: Path, frames: Frames, tuner: Any = None) -> None:
        self.detect, self.snapshots, self.frames, self.tuner = detect, snapshots, frames, tuner
        self.ids = itertools.count(1)
        self.job: dict[str, Any] = {"state": "idle", "id": None, "reason": None, "frames": 0, "elapsed_s": None}
        self.started = 0.0
        self.task: asyncio.Task[None] | None = None

    def add_routes(self, app: web.Application) -> None:
        """Register the routes, and the job's end when the app stops."""
        app.router.add_post("/api/detector/calibrate", self.start)
        app.router.add_get("/api/detector/calibrate", self.status)
        app.on_cleanup.append(self._cleanup)

    def refusal(self) -> web.HTTPException | None:
        """Why a calibration cannot start now, as the HTTP answer; None when it can."""
        from ..detect.backends import exportable, openvino

        if self.task is not None and not self.task.done():
            return web.HTTPConflict(reason="calibration running", text=f"calibration {self.job['id']} is "
                                    f"{self.job['state']}: wait for it (GET /api/detector/calibrate)")
        if not nncf_installed():
            return web.HTTPNotImplemented(reason="nncf not installed", text="INT8 calibration needs nncf: install "
                                          "the int8 extra (pip install 'camserver[int8]')")
        if not exportable(self.detect.model) or not openvino.available():
            return web.HTTPConflict(reason="cannot calibrate", text="INT8 calibration needs a .pt or .yaml model "
                                    f"and openvino; detect.model is {printable(str(self.detect.model))}")
        return None

    async def start(self, request: web.Request) -> web.Response:
        """202 and the job's id; 409 while one runs or where the model cannot be calibrated; 501 without nncf."""
        body: Any = await read_json(request, 1024) if request.can_read_body else {}
        count = body.get("frames", MAX_FRAMES) if isinstance(body, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_FRAMES:
            raise web.HTTPBadRequest(text=f"frames: a whole number from 1 to {MAX_FRAMES}")
        refused = self.refusal()
        if refused is not None:
            raise refused
        job_id = f"cal-{next(self.ids)}"
        self.job = {"state": "collecting", "id": job_id, "reason": None, "frames": 0, "elapsed_s": 0.0}
        self.started = time.monotonic()
        self.task = asyncio.create_task(self._run(count), name=f"calibration-{job_id}")
        return web.json_response({"id": job_id, "state": "collecting", "frames_max": count}, status=202)

    async def status(self, request: web.Request) -> web.Response:
        """The job's state, reason, frames used and elapsed seconds."""
        return web.json_response(self.figures())

    def figures(self) -> dict[str, Any]:
        """The job as JSON (elapsed counts while it runs)."""
        job = dict(self.job)
        if job["state"] in ("collecting", "quantizing"):
            job["elapsed_s"] = round(time.monotonic() - self.started, 1)
        return job

    def _end(self, state: str, reason: str) -> None:
        self.job.update(state=state, reason=reason, elapsed_s=round(time.monotonic() - self.started, 1))

    async def _run(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        folder = Path(await loop.run_in_executor(None, tempfile.mkdtemp, "", "camserver-calibrate-"))
        try:
            self.job["frames"] = await self._collect(folder, count)
            self.job["state"] = "quantizing"
            int8 = await self._quantize(folder, count)
            n = self.job["frames"]
            reason = (f"calibrated on {n} frames of this installation: {int8.name}" if n else
                      f"calibrated on {count} synthetic scenes (no snapshot, recording or live frame yet): {int8.name}")
            if self.tuner is None:
                self._end("done", reason + "; set detect.precision = \"auto\" (or \"int8\") to run it")
                return
            self.job["reason"] = reason + "; measuring it against the other candidates"
            await self.tuner.remeasure(int8)
            self._end("done", reason + "; " + self._verdict())
        except asyncio.CancelledError:
            self._end("failed", "stopped with the server")
            raise
        except Exception as exc:  # one line for the page; the server goes on with what it runs
            log.warning("calibration %s failed", self.job["id"], exc_info=True)
            self._end("failed", printable(str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)))
        finally:
            await loop.run_in_executor(None, shutil.rmtree, folder, True)

    def _verdict(self) -> str:
        """Whether INT8 won the tuner's new pass, and why (or why not)."""
        t = self.tuner
        int8 = [c for c in t.candidates if c.precision == "int8" and c.ms is not None]
        if t.winner == "int8":
            return f"int8 won: {t.why}"
        if not int8:
            skipped = next((c.skipped for c in t.candidates if c.precision == "int8" and c.skipped), "not measured")
            return f"int8 was not measured ({skipped}); {t.winner} keeps running"
        best = min(int8, key=lambda c: c.ms or 0.0)
        gate = "passed the gate" if best.passed else f"failed the gate (agreement {best.agreement})"
        return f"int8 lost: best {best.name} {best.ms} ms, {gate}; {t.why}"

    async def _collect(self, folder: Path, count: int) -> int:
        """Frames written to `folder`: snapshots and recordings' frames first, then live frames over cameras and time."""
        loop = asyncio.get_running_loop()
        kept = await loop.run_in_executor(None, gathered_frames, self.snapshots, count, folder)  # recordings' into folder
        written = 0
        for path in kept:
            if path.parent != folder:  # a snapshot: copied
                await loop.run_in_executor(None, shutil.copyfile, path, folder / f"s{written:05d}{path.suffix.lower()}")
            written += 1
            self.job["frames"] = written
        seen: dict[str, int] = {}
        deadline = time.monotonic() + COLLECT_S
        while written < count and time.monotonic() < deadline:
            fresh = [(cid, seq, jpeg) for cid, seq, jpeg in self.frames() if seen.get(cid) != seq]
            if not fresh and not seen:
                break  # no camera has a frame: the synthetic scenes stand in
            for cid, seq, jpeg in fresh[:count - written]:
                seen[cid] = seq
                await loop.run_in_executor(None, (folder / f"l{written:05d}.jpg").write_bytes, jpeg)
                written += 1
                self.job["frames"] = written
            await asyncio.sleep(SAMPLE_S)
        return written

    async def _quantize(self, folder: Path, count: int) -> Path:
        """The child process's INT8 folder; a failure raises with its last line."""
        d = self.detect
        args = ["-m", CALIBRATOR, "--config", str(folder / "none.toml"), "--model", str(d.model),
                "--imgsz", str(d.imgsz), "--frames", str(folder), "--count", str(count), "--nice", str(NICE)]
        if d.cache_dir:
            args += ["--cache-dir", str(d.cache_dir)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), QUANTIZE_S)  # the loop's (monotonic) clock
        except TimeoutError:
            raise RuntimeError(f"the calibration process ran past its {QUANTIZE_S:.0f} s limit and was stopped") from None
        finally:
            if proc.returncode is None:
                proc.kill()
                with suppress(ProcessLookupError):
                    await proc.wait()
        lines = out.decode(errors="replace").strip().splitlines()
        if proc.returncode != 0 or not lines:
            tail = err.decode(errors="replace").strip().splitlines()
            raise RuntimeError(tail[-1] if tail else f"the calibration process exited with {proc.returncode}")
        return Path(lines[-1])

    async def _cleanup(self, app: web.Application) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
