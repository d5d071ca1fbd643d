"""Execution modes as a tuned dimension of detect.precision auto: one stream, two streams (the scheduler's pair of
frames in flight) and batch 2; each gated against f32 in one stream, the fastest passing one chosen, and what runs
read back from the compiled model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from camserver.detect.backends import openvino as ov
from camserver.detect.tuner import detections, held_out, letterboxed, timed_chunk
from camserver.detect.tuning import Candidate, agreement, choose

ROOT = Path(__file__).resolve().parents[1]
SHAPES = next((p for p in (ROOT.parent / "shared" / "testdata" / "shapes-yolo11n.pt",
                           ROOT.parent.parent / "shared" / "testdata" / "shapes-yolo11n.pt") if p.exists()),
              ROOT.parent / "shared" / "testdata" / "shapes-yolo11n.pt")


def test_the_fastest_passing_mode_wins_and_a_faster_one_failing_the_gate_never_does():
    """Injected timings and detections: f32/streams at 12 ms beats f32 in one stream at 20 ms; f32/batch2 at 8 ms
    whose detections miss f32's (injected) fails the gate and is not picked."""
    ref = [np.array([[0, 0, 10, 10, 0.9, 0], [20, 20, 40, 40, 0.8, 1]], np.float32)] * 4
    missing = [np.array([[0, 0, 10, 10, 0.9, 0]], np.float32)] * 4
    f32 = Candidate("f32", "fp32", [20.0, 21.0, 19.0])
    streams = Candidate("f32", "fp32", [12.0, 13.0, 11.0], *agreement(ref, [r.copy() for r in ref]), mode="streams")
    batch2 = Candidate("f32", "fp32", [8.0, 8.0, 8.0], *agreement(ref, missing), mode="batch2")
    assert batch2.agreement == pytest.approx(2 / 3) and not batch2.passed
    winner, why = choose([f32, batch2, streams])
    assert winner is streams
    assert why.startswith("f32/streams is the fastest passing candidate at 12.0 ms a frame, 1.67x f32's 20.0 ms")
    assert "failed the gate: f32/batch2" in why
    assert streams.figures()["mode"] == "streams"


@pytest.mark.skipif(not ov.available(), reason="openvino not installed (make test installs it)")
@pytest.mark.skipif(not SHAPES.exists(), reason=f"{SHAPES} not found (../shared/testdata)")
def test_each_mode_detects_what_one_stream_does_and_reports_what_it_compiled(tmp_path):
    """The shapes model's IR at 320: two streams and batch 2 find f32's boxes (agreement 1, pairs and a single
    padded frame alike), and executed() reads streams, hint and batch back from each compiled model."""
    from camserver.detect.backends.export import exported_model, export_shape

    model = tmp_path / "shapes-yolo11n.pt"
    shutil.copy(SHAPES, model)
    shape = export_shape(320)
    folder = exported_model(str(model), "openvino", shape, ov.runtime_version(), tmp_path / "cache")
    tensors = [letterboxed(im, shape) for im in held_out([], 5)]  # odd: the last pair is filled up
    runners = {m: ov.Runner(ov.compile_ir(folder, "f32", 2, m), m) for m in ov.MODES}
    reference = detections(runners["latency"], tensors, 0.25, 0.7)
    assert sum(len(r) for r in reference) >= 5  # the synthetic scenes have shapes the model finds
    for mode, runner in runners.items():
        assert agreement(reference, detections(runner, tensors, 0.25, 0.7))[0] == 1.0, mode
        assert timed_chunk(runner, tensors, 4) > 0
        runs = ov.executed(runner.compiled)
        assert runs["batch"] == int(runner.compiled.input(0).get_shape()[0]) == (2 if mode == "batch2" else 1)
        assert runs["num_streams"] == int(str(runner.compiled.get_property("NUM_STREAMS")))
        assert runs["num_streams"] == 2 if mode == "streams" else runs["performance_hint"] == "LATENCY"
    single = np.concatenate([tensors[0], np.zeros_like(tensors[0])])  # ultralytics pads a short batch with zeros
    out = next(iter(runners["streams"](single).values()))
    assert out.shape[0] == 2 and not out[1].any() and out[0].any()  # the padding is not inferred


def test_batch2_must_win_clearly_over_an_unpadded_mode():
    """Batch 2 timed 5% faster than two streams is not taken (camserver pads lone frames); 30% faster it is."""
    f32 = Candidate("f32", "fp32", [20.0, 20.0, 20.0])
    streams = Candidate("f32", "fp32", [10.0, 10.0, 10.0], mode="streams")
    close = Candidate("f32", "fp32", [9.5, 9.5, 9.5], mode="batch2")
    clear = Candidate("f32", "fp32", [7.0, 7.0, 7.0], mode="batch2")
    for c in (f32, streams, close, clear):
        c.agreement, c.score_diff = 1.0, 0.0
    assert choose([f32, streams, close])[0] is streams
    assert choose([f32, streams, clear])[0] is clear


def test_each_candidate_gets_a_verdict_and_batch2_short_of_its_margin_is_said_so():
    """batch2 at 9 ms passes but is not 1.15x two streams' 10 ms: streams wins and its verdict names the margin;
    batch2's says it needs 1.15x; a failing one and a skipped one say so; a slower passing one gives its ratio."""
    from camserver.detect.tuning import BATCH2_MARGIN, verdicts

    f32 = Candidate("f32", "fp32", [20.0])
    streams = Candidate("f32", "fp32", [10.0], 1.0, 0.0, mode="streams")
    batch2 = Candidate("f32", "fp32", [9.0], 1.0, 0.0, mode="batch2")
    failed = Candidate("int8", "int8", [5.0], 0.5, 0.0)
    skipped = Candidate("bf16", skipped="no BF16 on this CPU")
    everything = [f32, streams, batch2, failed, skipped]
    winner, _ = choose(everything)
    assert winner is streams
    said = dict(zip(("f32", "streams", "batch2", "failed", "skipped"), verdicts(everything, winner), strict=True))
    assert said["streams"] == f"winner: fastest passing the gate without batch 2 (batch2 needs {BATCH2_MARGIN}x to win)"
    assert said["batch2"] == f"1.11x the winner, but batch2 needs {BATCH2_MARGIN}x to win"
    assert said["f32"] == "passed; 2.00x the winner's ms"
    assert said["failed"] == "failed the gate" and said["skipped"] == "skipped: no BF16 on this CPU"
    assert verdicts([f32], f32) == ["winner: fastest passing the gate"]


async def test_a_pass_that_fails_or_is_cancelled_shuts_its_thread_and_logs_what_keeps_serving(tmp_path, caplog):
    """run() and remeasure(): a failing pass is state failed with its own log line (the default, or the current
    precision, keeps serving) and shuts its thread; run() cancelled in its start delay (shutdown) ends cancelled,
    its thread shut, first_pass set so a waiting remeasure() is not left hanging."""
    import asyncio
    import logging

    from camserver.detect.tuner import PrecisionTuner
    from camserver.detect.tuning import TuningCache

    def broken() -> list:
        raise RuntimeError("no workers")

    def tuner(start_delay_s: float) -> PrecisionTuner:
        return PrecisionTuner({}, 0.25, 0.45, 1, broken, lambda: False, lambda: [], TuningCache(tmp_path / "t.json"),
                              start_delay_s=start_delay_s)

    failing = tuner(0.0)
    with caplog.at_level(logging.ERROR, logger="camserver.detect.tuner"):
        run = asyncio.create_task(failing.run())
        async with asyncio.timeout(10):
            await failing.first_pass.wait()
        assert failing.state == "failed" and failing.thread._shutdown
        await failing.remeasure(tmp_path / "m-int8_openvino_model")
        assert failing.state == "failed" and failing.thread._shutdown
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["precision tuning failed; the runtime's default precision keeps serving",
                        "precision tuning with the calibrated INT8 model failed; the current precision keeps serving"]
    assert all("no workers" in str(r.exc_info[1]) for r in caplog.records)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)

    waiting = tuner(60.0)
    run = asyncio.create_task(waiting.run())
    await asyncio.sleep(0.05)
    run.cancel()
    async with asyncio.timeout(10):
        assert isinstance((await asyncio.gather(run, return_exceptions=True))[0], asyncio.CancelledError)
    assert waiting.first_pass.is_set() and waiting.thread._shutdown and waiting.state == "waiting"
