"""INT8 calibration from the admin API (POST/GET /api/detector/calibrate): admin only, one job at a time, off the
event loop (a camera at 10 fps keeps flowing), and on done the precision tuner measures the INT8 model too."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import shutil
import time
from pathlib import Path

import aiohttp
import pytest

from camserver.detect import tuner as tuner_module
from camserver.detect.backends import openvino as ov
from conftest import connect_camera, feeding, make_config, running_server, wait_for

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ROOT.parent / "shared" / "testdata" / "shapes-yolo11n.pt"
VIEWER = "viewer-secret-42"
ADMIN = "admin-secret-42"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
AS_VIEWER = {"Authorization": f"Bearer {VIEWER}"}
URL = "/api/detector/calibrate"


async def test_only_an_admin_may_start_it_and_without_nncf_the_answer_names_the_extra(monkeypatch):
    """No credential: 401; the viewer token: 403; the admin without nncf: 501 naming the int8 extra; a bad frame
    count: 400; GET says idle, nothing started."""
    monkeypatch.setattr("camserver.web.calibration.nncf_installed", lambda: False)
    async with running_server(http={"token": VIEWER, "admin_token": ADMIN}) as srv, aiohttp.ClientSession() as http:
        async with http.post(srv.http + URL, json={}) as resp:
            assert resp.status == 401
        async with http.post(srv.http + URL, json={}, headers=AS_VIEWER) as resp:
            assert resp.status == 403
        async with http.post(srv.http + URL, json={"frames": 0}, headers=AS_ADMIN) as resp:
            assert resp.status == 400
        async with http.post(srv.http + URL, json={}, headers=AS_ADMIN) as resp:
            assert resp.status == 501
            assert "int8" in await resp.text() and "nncf" in await resp.text()
        async with http.get(srv.http + URL, headers=AS_VIEWER) as resp:
            assert resp.status == 200
            assert (await resp.json())["state"] == "idle"


@pytest.mark.skipif(not ov.available(), reason="openvino not installed (make test installs it)")
@pytest.mark.skipif(not SHAPES.exists(), reason=f"{SHAPES} not found (../shared/testdata)")
@pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="nncf not installed (pip install 'camserver[int8]')")
async def test_calibration_runs_in_the_background_while_a_camera_flows_and_int8_then_competes(tmp_path, monkeypatch):
    """The shapes model at 160 with detect.precision auto: POST (admin) answers 202 with an id, a second POST 409;
    GET goes collecting -> quantizing -> done with the frames used; a camera at 10 fps keeps being detected all
    along; the tuner's candidates then include int8 measured, and the status says whether it won and why."""
    monkeypatch.setattr(tuner_module, "START_DELAY_S", 0.5)
    model = tmp_path / "shapes-yolo11n.pt"
    shutil.copy(SHAPES, model)
    config = make_config(detect={"model": str(model), "backend": "openvino", "imgsz": 160, "precision": "auto",
                                 "cache_dir": str(tmp_path / "cache")}, http={"token": VIEWER, "admin_token": ADMIN})
    from camserver.app import CamServer

    async with CamServer.from_config(config) as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.http_port}"
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/porch")
        states: list[str] = []
        async with feeding(cam, 10, processed=lambda: c.frames_processed if (c := server.hub.get("porch")) else 0,
                           paced=True) as feed:
            processed = feed.processed
            await wait_for(lambda: server.tuner.state in ("done", "failed"), timeout=120, what="the first tuning")
            assert any(c.precision == "int8" and c.skipped for c in server.tuner.candidates)  # nothing calibrated yet
            async with http.post(base + URL, json={"frames": 16}, headers=AS_VIEWER) as resp:
                assert resp.status == 403
            async with http.post(base + URL, json={"frames": 16}, headers=AS_ADMIN) as resp:
                assert resp.status == 202, await resp.text()
                job = await resp.json()
            assert job["id"] and job["state"] == "collecting"
            async with http.post(base + URL, json={"frames": 16}, headers=AS_ADMIN) as resp:
                assert resp.status == 409
                assert job["id"] in await resp.text()
            marks = len(processed)
            deadline = time.monotonic() + 180
            while True:
                async with http.get(base + URL, headers=AS_VIEWER) as resp:
                    status = await resp.json()
                if not states or states[-1] != status["state"]:
                    states.append(status["state"])
                if status["state"] in ("done", "failed") or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
            during = processed[marks:]
        await cam.close()

        assert status["state"] == "done", status
        assert states[:1] == ["collecting"] and "quantizing" in states, states
        assert status["id"] == job["id"] and status["frames"] == 16 and status["elapsed_s"] > 0
        int8 = [c for c in server.tuner.figures()["candidates"] if c["precision"] == "int8"]
        assert int8 and all(c["skipped"] is None and c["ms_per_frame"] > 0 for c in int8), int8
        assert ("int8 won" in status["reason"]) == (server.tuner.winner == "int8"), status
        assert "int8 lost" in status["reason"] or "int8 won" in status["reason"]
        # the camera never stopped while it collected, quantized and re-measured: no gap over 2 s, >= 60% detected
        rises = [t for (t, n), (_, m) in itertools.pairwise(during) if m > n]
        assert rises and max(b - a for a, b in itertools.pairwise(rises)) < 2.0
        assert during[-1][1] - during[0][1] >= 0.6 * 10 * (during[-1][0] - during[0][0]), (during[0], during[-1])
        assert server.scheduler.camera_figures("porch")["detect_errors"] == 0
