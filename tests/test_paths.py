"""The two detection paths keep the promises of the DetectionPath interface (see camserver/detect/paths.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from camserver.detect.base import BackendInfo, Detection, DetectorUnavailable
from camserver.detect.paths import LocalPath, RemotePath
from camserver.detect.pipeline import Prepared
from camserver.detect.pool import WORKER_QUEUE, DetectorPool
from camserver.hub import Frame
from conftest import FakeDetector


def items(n: int) -> list[Prepared]:
    image = np.zeros((48, 64, 3), np.uint8)
    return [Prepared(Frame(i, b"jpeg%d" % i, time.monotonic(), time.time()), image, None, "test") for i in range(n)]


class Hanging(FakeDetector):
    """Blocks its worker thread until released: a hung inference call."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def detect(self, images):
        self.release.wait(10)
        return super().detect(images)


class Failing(FakeDetector):
    def detect(self, images):
        raise RuntimeError("boom\nsecond line")


async def test_local_path_claims_a_worker_at_submit_and_reports_each_outcome():
    pool = DetectorPool(FakeDetector, 1)
    await pool.start()
    try:
        path = LocalPath(pool, stall_timeout_s=5.0)
        assert path.detects and path.decodes and path.state == "ok" and path.refusal() is None
        assert path.max_batch == 1 and path.info is not None and path.info.backend == "fake"
        assert path.figures(7) == {}  # nothing remote to show
        assert path.free()
        outcomes = [path.submit(items(1)) for _ in range(WORKER_QUEUE)]  # room is claimed now, not when awaited
        assert not path.free()
        for outcome in outcomes:
            done = await asyncio.wait_for(outcome, 10)
            assert done.kind == "detected" and len(done.results) == 1 and done.results[0][0].class_name == "fake"
            assert done.ms >= 0
        assert path.free()
    finally:
        await pool.stop()

    failing = DetectorPool(Failing, 1)
    await failing.start()
    try:
        path = LocalPath(failing, 5.0)
        done = await asyncio.wait_for(path.submit(items(2)), 10)
        assert done.kind == "failed" and done.error == "boom"
        assert path.free()  # a failed call frees its worker
    finally:
        await failing.stop()

    hung: list[Hanging] = []
    stalling = DetectorPool(lambda: hung.append(Hanging()) or hung[-1], 1)
    await stalling.start()
    try:
        path = LocalPath(stalling, 0.3)
        done = await asyncio.wait_for(path.submit(items(1)), 10)
        assert done.kind == "stalled" and stalling.stalls == 1
        assert path.stalled and path.state == "stalled" and path.refusal() == "stalled"
        deadline = time.monotonic() + 10
        while path.stalled:  # the replacement loads
            assert time.monotonic() < deadline, "replacement never became ready"
            await asyncio.sleep(0.05)
        assert path.state == "ok" and path.refusal() is None and path.free()
    finally:
        for h in hung:
            h.release.set()
        await stalling.stop()


class Remote:
    """An AsyncDetector that answers as told."""

    def __init__(self) -> None:
        self.info = BackendInfo("triton", "remote", "fp16", 0)
        self.state, self.reason = "ok", None
        self.answer: object = None
        self.sent: list[list[bytes]] = []

    def free(self) -> bool:
        return self.state == "ok"

    async def start(self, spawn=None) -> None: ...

    async def stop(self) -> None: ...

    async def detect_jpegs(self, jpegs):
        self.sent.append(list(jpegs))
        if isinstance(self.answer, BaseException):
            raise self.answer
        if self.answer == "short":
            return []
        return [[Detection(0, "person", 0.8, (1.0, 2.0, 3.0, 4.0))] for _ in jpegs]

    def draw(self, image, detections):
        return image

    def figures(self):
        return {"url": "grpc://x", "state": self.state}


async def test_remote_path_sends_jpegs_undecoded_and_reports_each_outcome():
    client = Remote()
    path = RemotePath(client)
    assert path.detects and not path.decodes and not path.stalled
    assert path.max_batch == 1  # a service that reports 0 still takes one frame per call
    assert path.drawer is client and path.reason is None and path.refusal() is None
    assert path.figures(3) == {"remote": {"url": "grpc://x", "state": "ok"}, "frames_undetected": 3}

    done = await asyncio.wait_for(path.submit(items(2)), 10)
    assert client.sent == [[b"jpeg0", b"jpeg1"]]  # the JPEGs as they came
    assert done.kind == "detected" and [d[0].class_name for d in done.results] == ["person", "person"]

    client.answer = DetectorUnavailable("connection refused")
    assert (await asyncio.wait_for(path.submit(items(1)), 10)).kind == "unavailable"
    client.answer = RuntimeError("bad answer")
    done = await asyncio.wait_for(path.submit(items(1)), 10)
    assert done.kind == "failed" and done.error == "bad answer"
    client.answer = "short"
    done = await asyncio.wait_for(path.submit(items(2)), 10)
    assert done.kind == "failed" and "0 results for 2 frames" in done.error

    client.state, client.reason = "degraded", "unreachable"
    assert path.state == "degraded" and path.reason == "unreachable" and path.refusal() == "unavailable"
    assert not path.free()
