"""The calibration job's timers under wall-clock steps: the server as a process under faketime (the monotonic clock
left alone), its wall clock stepped forward 1 day and back during the live-frame collection and the quantizing
child process; the collection keeps its span, the child's time limit fires neither early nor never, and the
elapsed seconds in GET /api/detector/calibrate never go back nor jump."""

from __future__ import annotations

import asyncio
import itertools
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from camserver.detect.backends import openvino as ov
from conftest import connect_camera, feeding
from serverproc import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = next((p / "shared" / "testdata" for p in Path(__file__).resolve().parents[2:4]
                 if (p / "shared" / "testdata").is_dir()), ROOT.parent / "shared" / "testdata")
FAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))),
                Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"))
URL = "/api/detector/calibrate"
ADMIN = {"Authorization": "Bearer admin-secret-42"}
COLLECT_S = 10.0  # the server's COLLECT_S and QUANTIZE_S, shortened so that both run out within the test
QUANTIZE_S = 12.0
QUICK_S = 4.0  # how long the quick stand-in calibrator takes
FPS = 4  # under 1 / SAMPLE_S: every frame is collected, so the span (not the count) ends the collection
POLL_S = 0.2

pytestmark = [
    pytest.mark.skipif(not FAKETIME.exists(), reason=f"faketime not installed ({FAKETIME}; apt-get install faketime)"),
    pytest.mark.skipif(not ov.available(), reason="openvino not installed: calibration refuses to start (409)"),
    pytest.mark.skipif(not (TESTDATA / "shapes-yolo11n.pt").exists(), reason="../shared/testdata not beside the checkout"),
]

# The real server (cli.main) with the job's two spans shortened, and the quantizing child process replaced
# by `standin`: NNCF's quantizing is not what is tested (and nncf is an optional extra), the server's timing of
# its child process is. The refusal without nncf is told there is one, since the stand-in needs none.
SERVER = textwrap.dedent(f"""
    import sys
    from camserver import cli
    from camserver.web import calibration

    calibration.COLLECT_S = {COLLECT_S}
    calibration.QUANTIZE_S = {QUANTIZE_S}
    calibration.CALIBRATOR = "standin"
    calibration.nncf_installed = lambda: True
    sys.argv[0] = "camserver"
    raise SystemExit(cli.main(sys.argv[1:]))
""")

# Takes the calibrator's command line; does what behaviour.txt says: take N seconds (of the monotonic clock)
# and print an INT8 folder as the real one does, or hang until killed. It waits in select(): under faketime
# with the monotonic clock left alone, time.sleep (clock_nanosleep) fails with EINVAL.
STANDIN = textwrap.dedent("""
    import argparse, pathlib, select, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames")
    args, _ = parser.parse_known_args()
    behaviour = pathlib.Path("behaviour.txt").read_text().strip()
    until = time.monotonic() + (1e9 if behaviour == "hang" else float(behaviour))
    while time.monotonic() < until:
        select.select([], [], [], 0.1)
    print(pathlib.Path.cwd() / f"standin-{len(list(pathlib.Path(args.frames).iterdir()))}-int8_openvino_model")
""")


async def follow(http: aiohttp.ClientSession, base: str, offset: Path,
                 steps: dict[str, tuple[float, str]]) -> tuple[float, list[tuple[float, dict[str, Any]]]]:
    """POST a job, then GET it every POLL_S until it ends, writing faketime's offset `steps[state]` = (seconds
    into that state, offset); (the time the POST was answered, [(time of each GET, its answer)])."""
    async with http.post(base + URL, json={"frames": 300}, headers=ADMIN) as resp:
        assert resp.status == 202, await resp.text()
    posted = time.monotonic()
    entered: dict[str, float] = {"collecting": posted}
    polls: list[tuple[float, dict[str, Any]]] = []
    while True:
        async with http.get(base + URL, headers=ADMIN) as resp:
            status = await resp.json()
        now = time.monotonic()
        polls.append((now, status))
        state = status["state"]
        entered.setdefault(state, now)
        if state in steps and now - entered[state] >= steps[state][0]:
            offset.write_text(steps.pop(state)[1] + "\n")
        if state in ("done", "failed"):
            return posted, polls
        assert now - posted < COLLECT_S + QUANTIZE_S + 60, f"the job never ended: {status}"
        await asyncio.sleep(POLL_S)


def spans(posted: float, polls: list[tuple[float, dict[str, Any]]]) -> tuple[float, float]:
    """(seconds from the POST to the first GET that saw quantizing, from that to the first that saw the end)."""
    quantizing = next(t for t, s in polls if s["state"] == "quantizing")
    ended = next(t for t, s in polls if s["state"] in ("done", "failed"))
    return quantizing - posted, ended - quantizing


def check_elapsed(posted: float, polls: list[tuple[float, dict[str, Any]]]) -> None:
    """elapsed_s never negative nor going back; it grows by the time between two GETs (no jump); it ends at the
    job's real length."""
    for (t0, a), (t1, b) in itertools.pairwise(polls):
        assert 0 <= a["elapsed_s"] <= b["elapsed_s"], (a, b)
        assert b["elapsed_s"] - a["elapsed_s"] <= t1 - t0 + 0.5, (t1 - t0, a, b)
    last_running = max(t for t, s in polls if s["state"] in ("collecting", "quantizing"))
    assert last_running - posted - 0.5 <= polls[-1][1]["elapsed_s"] <= polls[-1][0] - posted + 0.5, polls[-1]


async def test_collection_span_and_quantize_limit_hold_through_wall_clock_steps(tmp_path, monkeypatch):
    """Job 1: wall +1 day while collecting, another +1 day while a 4 s child runs: collection lasts its 10 s, the
    job ends done (the 12 s limit did not fire early). Job 2: wall back 1 day while collecting, back 25 h while the
    child hangs: collection still lasts 10 s, the child is killed at 12 s and the reason names the limit. elapsed_s
    in GET follows the monotonic clock all along; /healthz saw the 4 steps."""
    (tmp_path / "child.py").write_text(SERVER)
    (tmp_path / "standin.py").write_text(STANDIN)
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    config = tmp_path / "camserver.toml"
    config.write_text(f'[storage]\ndir = "{tmp_path / "data"}"\n[http]\nadmin_token = "admin-secret-42"\n'
                      f'[detect]\nbackend = "torch"\ncache_dir = "{tmp_path / "cache"}"\n')
    for key, value in {"LD_PRELOAD": str(FAKETIME), "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_NO_CACHE": "1",
                       "FAKETIME_DONT_FAKE_MONOTONIC": "1"}.items():
        monkeypatch.setenv(key, value)
    server = await ServerProcess.start("--config", str(config), "--model", str(TESTDATA / "shapes-yolo11n.pt"),
                                       "--imgsz", "160", cwd=tmp_path, module="child", timeout=180)
    for key in ("LD_PRELOAD", "FAKETIME_TIMESTAMP_FILE"):
        monkeypatch.delenv(key)  # the test itself on the real clock
    try:
        cam = await connect_camera(server.ws("porch"))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http, feeding(cam, FPS):
            await asyncio.sleep(1.0)  # a first frame in the camera's slot
            (tmp_path / "behaviour.txt").write_text(f"{QUICK_S}\n")
            posted, quick = await follow(http, server.http, offset, {"collecting": (3.0, "+1d"),
                                                                     "quantizing": (1.0, "+2d")})
            (tmp_path / "behaviour.txt").write_text("hang\n")
            posted2, hung = await follow(http, server.http, offset, {"collecting": (3.0, "+1d"),
                                                                     "quantizing": (1.0, "-1h")})
            async with http.get(server.http + "/healthz") as resp:
                clock = (await resp.json())["clock"]
        await cam.close()
    finally:
        rc = await server.stop(timeout=30)
    log = "".join(server.lines)
    assert rc == 0, log
    assert clock["steps"] == 4, clock  # the wall clock really stepped, each time seen by the server

    collected, quantized = spans(posted, quick)
    assert COLLECT_S - 1.0 <= collected <= COLLECT_S + 5.0, (collected, quick)
    end = quick[-1][1]
    assert end["state"] == "done" and "calibrated on" in end["reason"], end
    assert 0.5 * FPS * COLLECT_S <= end["frames"] < 300, end  # the span ended it, on live frames
    assert QUICK_S - 1.0 <= quantized < QUANTIZE_S, (quantized, end)
    check_elapsed(posted, quick)

    collected, quantized = spans(posted2, hung)
    assert COLLECT_S - 1.0 <= collected <= COLLECT_S + 5.0, (collected, hung)
    end = hung[-1][1]
    assert end["state"] == "failed" and f"{QUANTIZE_S:.0f} s" in end["reason"], end
    assert QUANTIZE_S - 1.0 <= quantized <= QUANTIZE_S + 5.0, (quantized, end)
    check_elapsed(posted2, hung)


async def test_tuner_pause_deadline_follows_the_monotonic_clock_through_wall_steps(tmp_path, monkeypatch):
    """The tuning pass waits while detection lags, up to its deadline (1 s here): with the wall clock read as
    stepping a day forward and an hour back at every look, it still gives up after 1 s, not at once nor never."""
    from camserver.detect.tuner import PrecisionTuner
    from camserver.detect.tuning import TuningCache

    real = time.time
    offsets = itertools.cycle((86400.0, -3600.0))
    monkeypatch.setattr(time, "time", lambda: real() + next(offsets))
    tuner = PrecisionTuner({}, 0.25, 0.45, 1, lambda: [], lambda: True, lambda: [], TuningCache(tmp_path / "t.json"),
                           deadline_s=1.0)
    try:
        started = time.monotonic()
        async with asyncio.timeout(30):
            assert await tuner._may_run(started) is False
        assert 0.9 <= time.monotonic() - started <= 5.0
        assert tuner.paused_s == pytest.approx(1.0, abs=0.5)
    finally:
        tuner.thread.shutdown(wait=False)
