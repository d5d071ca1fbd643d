"""detect.precision: the choice of the fastest precision that passes the accuracy gate, its cache, and `auto` on
the real OpenVINO backend switching without dropping a frame and reporting what the compiled model runs."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import connect_camera, feeding, make_config, wait_for

from camserver.config import ConfigError, from_mapping
from camserver.detect import tuner as tuner_module
from camserver.detect.backends import openvino as ov
from camserver.detect.tuning import (
    AGREEMENT_MIN,
    CACHE_KEYS_KEPT,
    Candidate,
    TuningCache,
    agreement,
    cache_key,
    candidates_of,
    choose,
    result_of,
)

ROOT = Path(__file__).resolve().parents[1]
SHAPES = next((p for p in (ROOT.parent / "shared" / "testdata" / "shapes-yolo11n.pt",
                           ROOT.parent.parent / "shared" / "testdata" / "shapes-yolo11n.pt") if p.exists()),
              ROOT.parent / "shared" / "testdata" / "shapes-yolo11n.pt")


def box(x1: float, y1: float, x2: float, y2: float, score: float = 0.9, cls: int = 0) -> list[float]:
    """One detection row: x1, y1, x2, y2, score, class."""
    return [x1, y1, x2, y2, score, cls]


def rows(*boxes: list[float]) -> np.ndarray:
    """A frame's detections as NMS gives them."""
    return np.array(boxes, np.float32).reshape(-1, 6)


def test_the_fastest_passing_candidate_wins():
    """int8 at 10 ms beats f32 at 16 ms when it agrees; the why names the ratio."""
    f32 = Candidate("f32", "fp32", [16.0, 17.0, 15.0])
    int8 = Candidate("int8", "int8", [10.0, 11.0, 9.0], agreement=0.99, score_diff=0.01)
    bf16 = Candidate("bf16", skipped="this CPU has no BF16")
    winner, why = choose([f32, bf16, int8])
    assert winner is int8
    assert why.startswith("int8 is the fastest passing candidate at 10.0 ms a frame, 1.60x f32's 16.0 ms")


def test_a_candidate_failing_the_gate_never_wins_however_fast():
    """Low agreement or drifting scores keep a faster candidate out; f32 always passes; skipped never wins."""
    f32 = Candidate("f32", "fp32", [20.0])
    disagrees = Candidate("int8", "int8", [5.0], agreement=AGREEMENT_MIN - 0.01, score_diff=0.0)
    drifts = Candidate("fp16", "fp16", [6.0], agreement=1.0, score_diff=0.2)
    unmeasured = Candidate("bf16", "bf16", [], agreement=1.0, score_diff=0.0)
    skipped = Candidate("bf16", skipped="no BF16", samples_ms=[1.0])
    winner, why = choose([disagrees, drifts, unmeasured, skipped, f32])
    assert winner is f32
    assert "failed the gate: int8" in why and "fp16" in why and "bf16" not in why  # skipped is not failed
    assert choose([])[0] is None


def test_agreement_matches_boxes_of_one_class_at_iou_half():
    """Same boxes agree fully; a missed box, another class or an IoU under 0.5 lowers agreement."""
    ref = [rows(box(0, 0, 10, 10, 0.9), box(20, 20, 40, 40, 0.8, 1)), rows()]
    assert agreement(ref, [r.copy() for r in ref]) == (1.0, 0.0)
    same_but_scores = [rows(box(0, 0, 10, 10, 0.85), box(20, 20, 40, 40, 0.7, 1)), rows()]
    got, diff = agreement(ref, same_but_scores)
    assert got == 1.0 and diff == pytest.approx(0.075)
    missed = [rows(box(0, 0, 10, 10, 0.9)), rows()]
    assert agreement(ref, missed)[0] == pytest.approx(2 / 3)
    other_class = [rows(box(0, 0, 10, 10, 0.9, 1), box(20, 20, 40, 40, 0.8, 1)), rows()]
    assert agreement(ref, other_class)[0] == pytest.approx(0.5)
    shifted = [rows(box(6, 0, 16, 10, 0.9), box(20, 20, 40, 40, 0.8, 1)), rows()]  # IoU 4/16 = 0.25
    assert agreement(ref, shifted)[0] == pytest.approx(0.5)
    assert agreement([rows()], [rows()]) == (1.0, 0.0)


def test_cache_key_changes_with_model_cpu_runtime_threads_and_int8(tmp_path, monkeypatch):
    """Any input of the measurement changes the key; the cache keeps a result per key, bounded, and survives junk."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    base = {"f32_model": "m-abc-224x320", "int8_model": None, "cpu": "AMD EPYC", "capabilities": ["FP32", "INT8"],
            "runtime": "2026.4.1", "threads": 0}
    key = cache_key(**base)
    for change in ({"f32_model": "m-def-224x320"}, {"f32_model": "m-abc-480x640"}, {"int8_model": "m-abc-int8"},
                   {"cpu": "Intel Xeon"}, {"capabilities": ["FP32", "INT8", "BF16"]}, {"runtime": "2026.5.0"},
                   {"threads": 1}):
        assert cache_key(**{**base, **change}) != key, change
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert cache_key(**base) != key
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    cache = TuningCache(tmp_path / "tuning.json")
    assert cache.load(key) is None
    f32 = Candidate("f32", "fp32", [12.0])
    cache.save(key, result_of([f32], f32, "f32 only", 3.0))
    loaded = cache.load(key)
    assert loaded["winner"] == "f32" and candidates_of(loaded)[0].ms == 12.0
    for i in range(CACHE_KEYS_KEPT + 5):
        cache.save(f"k{i}", result_of([f32], f32, "f32", 1.0))
    assert len(json.loads((tmp_path / "tuning.json").read_text())) == CACHE_KEYS_KEPT
    (tmp_path / "tuning.json").write_text("{not json")
    assert cache.load(key) is None


def test_precision_and_threads_are_validated():
    """detect.precision takes auto, f32, bf16, fp16, int8 only; threads 0 and up."""
    assert from_mapping({"detect": {"precision": "int8", "threads": 1}}).detect.precision == "int8"
    assert from_mapping({}).detect.precision == "auto"
    with pytest.raises(ConfigError, match="detect.precision"):
        from_mapping({"detect": {"precision": "fp64"}})
    with pytest.raises(ConfigError, match="detect.threads"):
        from_mapping({"detect": {"threads": -1}})


@pytest.mark.skipif(not ov.available(), reason="openvino not installed (make test installs it)")
@pytest.mark.skipif(not SHAPES.exists(), reason=f"{SHAPES} not found (../shared/testdata)")
async def test_auto_on_real_openvino_switches_without_dropping_frames_and_reports_what_runs(tmp_path, monkeypatch):
    """precision auto with shapes-yolo11n.pt at imgsz 320: while a camera streams at 10 fps the tuning pass measures,
    skips what this CPU lacks (saying why), installs the winner between inferences; frames_processed keeps rising
    through the swap, the stream keeps its rate, and /healthz reports the compiled model's own precision."""
    from camserver.app import CamServer

    monkeypatch.setattr(tuner_module, "START_DELAY_S", 1.0)
    model = tmp_path / "shapes-yolo11n.pt"
    shutil.copy(SHAPES, model)
    config = make_config(detect={"model": str(model), "backend": "openvino", "imgsz": 320, "precision": "auto",
                                 "cache_dir": str(tmp_path / "cache")})
    async with CamServer.from_config(config) as server:
        assert server.tuner is not None
        before = server.pool.workers[0].detector.executed
        assert before["requested"] == "auto"
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/ov")
        async with feeding(cam, 10, processed=lambda: c.frames_processed if (c := server.hub.get("ov")) else 0,
                           paced=True) as feed:
            processed = feed.processed
            await wait_for(lambda: server.tuner.state in ("done", "failed"), timeout=120, what="tuning finished")
            after_swap = processed[-1][1]
            await wait_for(lambda: processed[-1][1] >= after_swap + 5, timeout=30, what="frames after the swap")
        sent = feed.sent
        await cam.close()

        figures = server.tuner.figures()
        assert figures["state"] == "done", figures
        assert figures["elapsed_s"] < 120  # the pass's own limit, on 2 cores
        by_name = {c["precision"]: c for c in figures["candidates"] if c["mode"] == "latency"}
        assert by_name["f32"]["ms_per_frame"] > 0 and by_name["f32"]["passed"]
        modes = {c["mode"]: c for c in figures["candidates"] if c["precision"] == "f32"}
        assert set(modes) == set(ov.MODES) and all(c["ms_per_frame"] > 0 for c in modes.values())  # measured too
        caps = ov.cpu_capabilities()
        for precision in ("bf16", "fp16"):
            if ov.CAPABILITY[precision] not in caps:
                assert "on this CPU" in by_name[precision]["skipped"]
        assert "int8" in by_name and by_name["int8"]["skipped"]  # no calibrated model in this cache
        detector = server.pool.workers[0].detector
        assert detector.executed["requested"] == figures["winner"]
        runner = detector.model.predictor.model.backend.ov_compiled_model
        assert runner.mode == figures["mode"] == detector.executed["mode"]
        compiled = runner.compiled
        health = (server.health())["detection"]
        assert health["executed"]["num_streams"] == int(str(compiled.get_property("NUM_STREAMS")))
        assert health["executed"]["performance_hint"] == str(compiled.get_property("PERFORMANCE_HINT")).rsplit(".")[-1]
        assert health["executed"]["batch"] == int(compiled.input(0).get_shape()[0])
        hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        assert health["executed"]["inference_precision"] == hint
        assert health["precision"] == ov.executed(compiled)["precision"] == {"f32": "fp32"}.get(hint, hint)
        assert health["executed"]["threads"] == int(compiled.get_property("INFERENCE_NUM_THREADS"))
        assert health["tuning"]["winner"] == figures["winner"]
        # the stream never stopped: processed frames rose steadily, with no gap over 2 s, at >= 60% of the rate
        counts = [n for _, n in processed]
        assert counts == sorted(counts)
        rises = [t for (t, n), (_, m) in itertools.pairwise(processed) if m > n]
        assert max(b - a for a, b in itertools.pairwise(rises)) < 2.0
        assert counts[-1] >= 0.6 * sent, (counts[-1], sent)
        assert server.scheduler.camera_figures("ov")["detect_errors"] == 0


@pytest.mark.skipif(not ov.available(), reason="openvino not installed (make test installs it)")
@pytest.mark.skipif(not SHAPES.exists(), reason=f"{SHAPES} not found (../shared/testdata)")
@pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="nncf not installed (pip install 'camserver[int8]')")
async def test_calibrated_int8_is_measured_gated_and_reported_as_it_runs(tmp_path, monkeypatch, capsys):
    """python -m camserver.detect.calibrate on the simulator's frames writes an INT8 model beside the export; auto then
    measures it against f32 (agreement and speed), and whichever wins is what /healthz reports the compiled model runs."""
    from camserver.app import CamServer
    from camserver.detect.calibrate import main as calibrate_main

    model = tmp_path / "shapes-yolo11n.pt"
    shutil.copy(SHAPES, model)
    (tmp_path / "config.toml").write_text(f'[detect]\ncache_dir = "{tmp_path / "cache"}"\n')
    assert calibrate_main(["--config", str(tmp_path / "config.toml"), "--model", str(model), "--imgsz", "160",
                           "--count", "24", "--frames", str(tmp_path / "none")]) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert folder.name.endswith("-96x160-openvino-" + ov.runtime_version() + "-int8_openvino_model")
    assert ov.executed(ov.compile_ir(folder, "int8", 1))["int8_layers"] > 0

    monkeypatch.setattr(tuner_module, "START_DELAY_S", 0.5)
    config = make_config(detect={"model": str(model), "backend": "openvino", "imgsz": 160, "precision": "auto",
                                 "cache_dir": str(tmp_path / "cache")})
    async with CamServer.from_config(config) as server:
        await wait_for(lambda: server.tuner.state in ("done", "failed"), timeout=120, what="tuning finished")
        figures = server.tuner.figures()
        assert figures["state"] == "done", figures
        int8 = next(c for c in figures["candidates"] if c["precision"] == "int8" and c["mode"] == "latency")
        assert int8["executed"] == "int8" and int8["ms_per_frame"] > 0 and int8["agreement"] is not None, int8
        winner = next(c for c in figures["candidates"]
                      if (c["precision"], c["mode"]) == (figures["winner"], figures["mode"]))
        assert winner["passed"]
        compiled = server.pool.workers[0].detector.model.predictor.model.backend.ov_compiled_model.compiled
        assert server.health()["detection"]["precision"] == ov.executed(compiled)["precision"]
        assert (ov.executed(compiled)["int8_layers"] > 0) == (figures["winner"] == "int8")
    async with CamServer.from_config(config) as server:  # the next start: the cached result, no measuring
        assert server.pool.workers[0].detector.executed["requested"] == figures["winner"]  # from the first frame
        await wait_for(lambda: server.tuner.state in ("done", "failed"), timeout=60, what="cached tuning")
        assert server.tuner.cached and server.tuner.winner == figures["winner"]


@pytest.mark.skipif(not ov.available(), reason="openvino not installed (make test installs it)")
async def test_tuning_waits_while_detection_lags_and_gives_up_at_its_deadline(tmp_path):
    """While a camera's detection lags the pass times nothing; at its deadline it keeps the default, caches nothing."""
    from camserver.detect.backends.export import exported_model

    folder = exported_model("yolo11n.yaml", "openvino", (64, 96), ov.runtime_version(), tmp_path)
    cache = TuningCache(tmp_path / "precision-tuning.json")
    tuner = tuner_module.PrecisionTuner({"f32": folder}, 0.25, 0.45, 0, list, lambda: True, list, cache,
                                        start_delay_s=0, deadline_s=1.5)
    started = time.monotonic()
    await asyncio.wait_for(tuner.tune(), 60)
    figures = tuner.figures()
    assert figures["state"] == "done" and figures["winner"] is None and "ran out of time" in figures["why"]
    assert all(c["ms_per_frame"] is None for c in figures["candidates"])
    assert figures["paused_s"] > 0 and time.monotonic() - started < 30
    assert not (tmp_path / "precision-tuning.json").exists()


@pytest.mark.skipif(not ov.available(), reason="openvino not installed (make test installs it)")
async def test_system_view_shows_what_the_detector_runs_and_the_tuning(tmp_path, monkeypatch):
    """The System view (headless Chromium, real server, real OpenVINO) shows the read-back execution and the
    tuning's candidates with the reason a candidate was skipped."""
    from browser import CHROMIUM, chromium

    from camserver.app import CamServer

    if CHROMIUM is None:
        pytest.skip("chromium not installed")
    monkeypatch.setattr(tuner_module, "START_DELAY_S", 0.2)
    config = make_config(detect={"model": "yolo11n.yaml", "backend": "openvino", "imgsz": 96,
                                 "cache_dir": str(tmp_path)})
    async with CamServer.from_config(config) as server:
        await wait_for(lambda: server.tuner.state == "done", timeout=60, what="tuning finished")
        runs = server.health()["detection"]["executed"]
        async with chromium(f"http://127.0.0.1:{server.http_port}/#/system") as browser:
            text = await browser.wait("document.querySelector('.view-system') && "
                                      "document.querySelector('.view-system').innerText.includes('Candidates') && "
                                      "document.querySelector('.view-system').innerText")
            assert f"{runs['precision']} (inference {runs['inference_precision']}," in text
            assert f"{runs['threads']} thread" in text
            t = server.tuner.figures()
            name = t["winner"] if t["mode"] == "latency" else f"{t['winner']}/{t['mode']}"
            assert f"{name} is the fastest passing candidate" in text
            assert "skipped: no calibrated model" in text
            await browser.screenshot("system-precision")
            assert browser.errors == []


@pytest.mark.skipif(not ov.available(), reason="openvino not installed (make test installs it)")
def test_an_asked_precision_the_cpu_lacks_runs_and_is_reported_as_what_it_is(tmp_path, caplog):
    """detect.precision bf16 (or fp16) on a CPU without it: a warning, and the detector reports the compiled model's
    precision; int8 without a calibrated model: a warning naming the command, and f32 runs."""
    import logging

    from camserver.detect.backends import detector_factory

    caps = ov.cpu_capabilities()
    for precision in ("bf16", "int8"):
        d = from_mapping({"detect": {"model": "yolo11n.yaml", "backend": "openvino", "imgsz": 64, "precision": precision,
                                     "cache_dir": str(tmp_path)}}).detect
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="camserver"):
            detector = detector_factory(d)()
        compiled = detector.model.predictor.model.backend.ov_compiled_model.compiled
        assert detector.info.precision == ov.executed(compiled)["precision"] == detector.executed["precision"]
        messages = [r.getMessage() for r in caplog.records]
        assert any(m.startswith(f"openvino compiled for {'f32' if precision == 'int8' else precision}: runs ")
                   for m in messages), messages
        if precision == "int8":
            assert any("no calibrated model" in m and "camserver.detect.calibrate" in m for m in messages), messages
            assert detector.info.precision == "fp32"
        elif "BF16" not in caps:
            assert detector.info.precision == "fp32"
            assert f"detect.precision bf16: this CPU runs fp32 (it lists {', '.join(caps)})" in messages
