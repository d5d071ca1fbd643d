"""Issue 26, items 2 and 4: the inference service bounds what it decodes and can require a token;
camserver trusts no answer of it (NaN, infinity, huge boxes, 300,000 rows, wrong counts, missing outputs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest
from aiohttp import web

from bench.inferproc import InferProcess
from camserver.detect.backends import triton_contract as contract
from camserver.detect.backends.triton import TritonDetector
from camserver.detect.base import BackendInfo, Detection, bounded
from camserver.detect.frames import draw_detections
from camserver.detect.paths import RemotePath
from camserver.infer import pytriton_env
from camserver.infer.model import FrameLimits, JpegModel
from conftest import connect_camera, make_config, make_jpeg, mjpeg
from test_triton import shapes_frames

PLATFORM_PROBLEM = pytriton_env.platform_problem()
needs_pytriton = pytest.mark.skipif(PLATFORM_PROBLEM is not None, reason=f"PyTriton cannot run here: {PLATFORM_PROBLEM}")
TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
SHAPES = TESTDATA / "shapes-yolo11n.pt"
MODEL = str(SHAPES) if SHAPES.exists() else "yolo11n.yaml"
TOKEN = "camserver-test-token-26"
MB = 1024 * 1024


def strict_loads(text: str) -> object:
    """json.loads that refuses NaN, Infinity and -Infinity, as a browser's JSON.parse does."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def declared_jpeg(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header claims width x height (a decoder would allocate for that)."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    data[i + 5:i + 7], data[i + 7:i + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
    return bytes(data)


def png() -> bytes:
    return cv2.imencode(".png", np.zeros((480, 640, 3), np.uint8))[1].tobytes()


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes together, in MB."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return total / 1024


class BoxPerFrame:
    """A detector that finds one person per decoded image (the service's model side, without a model)."""

    info = BackendInfo("fake", "cpu", "fp32", 8)

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def detect(self, images):
        self.seen += [(im.shape[1], im.shape[0]) for im in images]
        return [[Detection(0, "person", 0.9, (1.0, 2.0, 30.0, 40.0))] for _ in images]

    def draw(self, image, detections):
        return image


# -- the service: what it decodes (#26.2) -------------------------------------------------------


def test_service_refuses_each_bad_item_and_detects_the_rest():
    """A 30000x30000 header, a PNG, an oversized JPEG, 8 of 20000x20000: refused per item with the reason, before
    decoding (memory flat, within 1 s), while the good frames of the same batch are detected."""
    detector = BoxPerFrame()
    good = make_jpeg(1, 640, 480)
    big = make_jpeg(2, 640, 480, noise=True)
    with ThreadPoolExecutor(2) as pool:
        model = JpegModel(detector, pool, limits=FrameLimits(max_bytes=len(big) - 1))
        before, started = rss_mb([os.getpid()]), time.monotonic()
        eight = model.infer(contract.pack_jpegs([declared_jpeg(20000, 20000)] * 8))
        took = time.monotonic() - started  # before: 16 s of decoding per item here
        out = model.infer(contract.pack_jpegs([good, declared_jpeg(30000, 30000), png(), big, good]))
        rise = rss_mb([os.getpid()]) - before
    errors = contract.unpack_errors(out[contract.ERROR], 5)
    assert errors[0] == errors[4] == ""
    assert errors[1].startswith("too_large:") and "30000x30000" in errors[1]
    assert errors[2].startswith("not_jpeg:") and errors[3].startswith("too_big:")
    assert out[contract.COUNT].reshape(-1).tolist() == [1, 0, 0, 0, 1]
    assert out[contract.SIZE].tolist() == [[640, 480], [0, 0], [0, 0], [0, 0], [640, 480]]
    assert detector.seen == [(640, 480), (640, 480)]  # only the good frames were decoded
    assert all(e.startswith("too_large:") for e in contract.unpack_errors(eight[contract.ERROR], 8))
    assert model.refused == 11
    print(f"RSS rise over both batches: {rise:.1f} MB; 8 refused in {took * 1000:.1f} ms")
    assert rise < 100 and took < 1.0


def test_service_binds_loopback_by_default_and_reads_its_token(tmp_path, monkeypatch):
    """--host is 127.0.0.1 unless given; the token comes from --token-file or $CAMSERVER_INFER_TOKEN, checked."""
    from camserver.config import ConfigError
    from camserver.infer import service

    args = service.build_parser().parse_args([])
    assert args.host == "127.0.0.1" and args.token_file is None
    assert (args.max_frame_bytes, args.max_width, args.max_height) == (1024 * 1024, 2592, 1944)  # ingest's defaults
    monkeypatch.delenv(service.TOKEN_ENV, raising=False)
    assert service.access_token(args) == ""
    monkeypatch.setenv(service.TOKEN_ENV, TOKEN)
    assert service.access_token(args) == TOKEN
    path = tmp_path / "token"
    path.write_text("short\n")
    with pytest.raises(ConfigError):
        service.access_token(service.build_parser().parse_args(["--token-file", str(path)]))
    path.write_text(f"{TOKEN}-from-file\n")
    assert service.access_token(service.build_parser().parse_args(["--token-file", str(path)])) == f"{TOKEN}-from-file"
    with pytest.raises(ConfigError):
        service.frame_limits(service.build_parser().parse_args(["--max-width", "0"]))


@needs_pytriton
def test_service_open_to_the_lan_without_token_warns(caplog):
    """Beyond loopback with no token: a warning naming --token-file; with a token every API but health is restricted."""
    from camserver.infer import service

    with caplog.at_level(logging.WARNING, logger="camserver.infer.service"):
        service.security_config("", "127.0.0.1")
        assert not caplog.records
        service.security_config("", "0.0.0.0")
    assert any("no token" in r.getMessage() and "--token-file" in r.getMessage() for r in caplog.records)
    restricted = service.security_config(TOKEN, "0.0.0.0")
    assert restricted.access_token == TOKEN and "inference" in restricted.restricted_endpoints
    assert "health" not in restricted.restricted_endpoints


@needs_pytriton
async def test_real_service_needs_its_token_and_refuses_bad_items_per_item():
    """The PyTriton service with a token: refused without it (HTTP 403, gRPC restricted), camserver's client
    sends it; a 30000x30000 header, a PNG and a batch of 8 such items are refused per item, normal frames in the
    same batch are detected, and the service's memory rises by less than 100 MB."""
    svc = InferProcess("--model", MODEL, "--imgsz", "320", "--max-batch", "8")
    os.environ["CAMSERVER_INFER_TOKEN"] = TOKEN  # the child inherits it; removed below
    try:
        await asyncio.to_thread(svc.start)
    finally:
        del os.environ["CAMSERVER_INFER_TOKEN"]
    try:
        assert any("token required" in line for line in svc.lines)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{svc.http}/v2/health/ready") as resp:
                assert resp.status == 200  # probes stay open
            for path in ("/v2/models/detector/config", "/v2/models/detector/stats"):
                async with http.get(svc.http + path) as resp:
                    assert resp.status == 403 and "triton-access-token" in await resp.text()
            async with http.get(f"{svc.http}/v2/models/detector/config",
                                headers={"triton-access-token": TOKEN}) as resp:
                assert resp.status == 200
        without = TritonDetector([svc.grpc], timeout_s=10.0)
        await without.start()
        await without.stop()
        assert without.state == "degraded" and "detect.triton_token" in (without.reason or "")

        det = TritonDetector([svc.grpc], timeout_s=20.0, token=TOKEN)
        await det.start()
        try:
            assert det.state == "ok", det.reason
            assert TOKEN not in repr(det.endpoints) + str(det.figures())
            good = shapes_frames(1)[0]  # a person and a car, as the shapes model knows them (VGA)
            assert det._client is not None
            before = rss_mb(svc.pids())
            answer = await det._client.infer(det.model, [good, declared_jpeg(30000, 30000), png(), good])
            errors = contract.unpack_errors(answer[contract.ERROR], 4)
            assert errors[0] == errors[3] == "" and errors[1].startswith("too_large:") and errors[2].startswith("not_jpeg:")
            assert answer[contract.SIZE].tolist() == [[640, 480], [0, 0], [0, 0], [640, 480]]  # decoded and inferred
            mixed = await det.detect_jpegs([good, declared_jpeg(30000, 30000), png(), good])
            assert mixed[1] == mixed[2] == [] and det.refused == 2
            if SHAPES.exists():
                assert {d.class_name for d in mixed[0]} == {d.class_name for d in mixed[3]} == {"person", "car"}
            results = await det.detect_jpegs([declared_jpeg(30000, 30000)] * 8)
            assert results == [[]] * 8 and det.refused == 10 and det.state == "ok"
            rise = rss_mb(svc.pids()) - before
            print(f"service RSS {before:.0f} MB, rise {rise:.1f} MB over the refused items")
            assert rise < 100
        finally:
            await det.stop()
        assert any("refused a JPEG: too_large" in line for line in svc.lines)
    finally:
        await asyncio.to_thread(svc.stop)


# -- camserver: answers are checked (#26.4) ----------------------------------------------------


def packed_ok(frames: int = 2) -> dict[str, np.ndarray]:
    return contract.pack_detections([[Detection(0, "person", 0.9, (10.0, 20.0, 110.0, 220.0))]] * frames,
                                    [(320, 240)] * frames)


@pytest.mark.parametrize("mode", ["nan", "inf", "huge", "rows", "count", "missing", "negative_count", "class",
                                  "score", "size", "undecoded"])
def test_answers_breaking_the_contract_are_refused(mode):
    """Each hostile answer raises BadAnswer, checked with numpy before any row is read (300,000 rows: well under 50 ms)."""
    out = packed_ok()
    dets, count, size = out[contract.DETECTIONS], out[contract.COUNT], out[contract.SIZE]
    if mode == "nan":
        dets[0, 0, 0] = np.nan
    elif mode == "inf":
        dets[1, 0, 3] = -np.inf
    elif mode == "huge":
        dets[0, 0, 2] = 1e30
    elif mode == "rows":
        dets, count = np.zeros((2, 300_000, 6), np.float32), np.full((2, 1), 300_000, np.int32)
    elif mode == "count":
        dets, count, size = dets[:1], count[:1], size[:1]
    elif mode == "missing":
        dets = None
    elif mode == "negative_count":
        count[0, 0] = -1
    elif mode == "class":
        dets[0, 0, 5] = 7
    elif mode == "score":
        dets[0, 0, 4] = 3.0
    elif mode == "size":
        size[0] = (70000, 240)
    elif mode == "undecoded":
        size[0] = (0, 0)
    started = time.perf_counter()
    with pytest.raises(contract.BadAnswer):
        contract.unpack_detections(dets, count, ["person", "car"], 2, size)
    assert time.perf_counter() - started < 0.05


def test_event_records_are_stored_without_nan(tmp_path):
    """An event record holding NaN or -inf is stored as strict JSON (null), so GET /api/events stays JSON."""
    import sqlite3

    from camserver.events.store import EventStore

    store = EventStore(tmp_path, retain_days=1)
    db = sqlite3.connect(":memory:")
    store.attach(db)
    record = {"id": "e1", "camera": "door", "label": "person", "start_time": 1.0, "end_time": None,
              "entered_zones": [], "has_snapshot": False, "score": float("nan"), "box": [float("-inf"), 0, 1, 1]}
    store.save(record, None, 2.0)
    (data,) = db.execute("SELECT data FROM events").fetchone()
    assert strict_loads(data)["score"] is None and strict_loads(data)["box"][0] is None  # type: ignore[index]


def test_boxes_are_clipped_to_the_frame_and_local_detections_bounded():
    """A box overhanging by rounding is clipped; a local model's NaN/inf boxes are dropped; drawing never raises."""
    out = packed_ok(1)
    out[contract.DETECTIONS][0, 0, :4] = (-1.5, 0.0, 321.0, 241.5)
    (dets,) = contract.unpack_detections(out[contract.DETECTIONS], out[contract.COUNT], ["person", "car"], 1,
                                         out[contract.SIZE])
    assert dets[0].box == (0.0, 0.0, 320.0, 240.0)
    hostile = [Detection(0, "person", 0.9, (float("nan"), 0.0, 10.0, 10.0)),
               Detection(0, "person", float("inf"), (0.0, 0.0, 10.0, 10.0)),
               Detection(1, "car", 0.8, (-1e30, 5.0, 1e30, 1e30))] + [Detection(0, "person", 0.5, (1, 1, 2, 2))] * 400
    kept = bounded(hostile, 320, 240)
    assert kept[0] == Detection(1, "car", 0.8, (0.0, 5.0, 320, 240)) and len(kept) == 298  # 300 looked at, 2 dropped
    image = np.zeros((240, 320, 3), np.uint8)
    draw_detections(image, hostile[:3])  # before: OverflowError / ValueError in cv2.rectangle


async def test_json_answers_never_carry_nan_or_infinity():
    """A handler's NaN/-Infinity (e.g. an event stored before this fix) is served as null, through a real socket."""
    from camserver import jsonsafe
    from camserver.web.strictjson import strict_json

    async def hostile(request: web.Request) -> web.Response:
        return web.json_response({"score": float("nan"), "box": [float("-inf"), 1.5], "label": "NaN Infinity"})

    app = web.Application(middlewares=[strict_json])
    app.router.add_get("/x", hostile)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    replaced = jsonsafe.replaced
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/x") as resp:
            body = strict_loads(await resp.text())
    finally:
        await runner.cleanup()
    assert body == {"score": None, "box": [None, 1.5], "label": "NaN Infinity"}
    assert jsonsafe.replaced == replaced + 1
    assert strict_loads(jsonsafe.dumps({"a": [float("nan")]}, "a test")) == {"a": [None]}


async def read_stream(reader, times: list[float], stop: asyncio.Event) -> None:
    """Note when each live frame of an MJPEG stream arrives until `stop`."""
    while not stop.is_set():
        try:
            part = await reader.next_live(timeout=2.0)
        except (TimeoutError, EOFError):
            continue
        times.append(time.monotonic())
        assert part.jpeg[:2] == b"\xff\xd8"


async def strict_get(http: aiohttp.ClientSession, url: str) -> object:
    async with http.get(url) as resp:
        assert resp.content_type == "application/json", url
        return strict_loads(await resp.text())


async def test_hostile_answers_keep_every_stream_and_json_sound(tmp_path):
    """camserver on a Triton that answers NaN, inf, 1e30, 300,000 rows, a result too many, no detections output:
    every camera's annotated stream keeps >= 9 of its 10 fps, every JSON route parses strictly, the service turns
    degraded after ERRORS_BEFORE_DEGRADED bad answers and recovers when its answers are good again."""
    from camserver.app import CamServer
    from faketriton import FakeTriton

    fake = FakeTriton()
    port = await asyncio.to_thread(fake.start)
    config = make_config(detect={"backend": "triton", "url": f"grpc://127.0.0.1:{port}", "timeout_s": 3.0},
                         storage={"dir": str(tmp_path)})
    ids = ["a", "b", "c"]
    stop = asyncio.Event()
    figures: list[str] = []
    try:
        async with CamServer.from_config(config) as server, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{server.http_port}"
            cams = [await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/{i}") for i in ids]
            sent = {i: 0 for i in ids}

            async def feed(i: str, cam) -> None:  # 10 fps on an absolute schedule, so a slow loop cannot lower it
                start, n = time.monotonic(), 0
                while not stop.is_set():
                    n += 1
                    await cam.send(make_jpeg(n, 320, 240))
                    sent[i] += 1
                    await asyncio.sleep(max(0.0, start + n * 0.1 - time.monotonic()))

            path = server.scheduler.path
            assert isinstance(path, RemotePath)
            remote = path.client
            feeders = [asyncio.create_task(feed(i, c)) for i, c in zip(ids, cams)]
            arrived: dict[str, list[float]] = {i: [] for i in ids}
            async with mjpeg(http, f"{base}/cameras/a/stream.mjpg") as ra, \
                    mjpeg(http, f"{base}/cameras/b/stream.mjpg") as rb, \
                    mjpeg(http, f"{base}/cameras/c/stream.mjpg") as rc:
                readers = [asyncio.create_task(read_stream(r, arrived[i], stop)) for i, r in zip(ids, (ra, rb, rc))]
                deadline = time.monotonic() + 20
                while not (await strict_get(http, f"{base}/api/events"))["events"]:  # type: ignore[index]
                    assert time.monotonic() < deadline, "no event from the good answers"
                    await asyncio.sleep(0.2)
                for mode in ("nan", "inf", "huge", "rows", "count", "missing"):
                    bad_before, t0 = remote.bad_answers, time.monotonic()
                    fake.mode = mode
                    while remote.state == "ok":
                        assert time.monotonic() - t0 < 10, f"{mode}: never degraded"
                        await asyncio.sleep(0.02)
                    to_degraded = time.monotonic() - t0
                    assert remote.bad_answers - bad_before >= 3, mode
                    assert "bad answer" in (remote.reason or ""), remote.reason
                    async with http.get(f"{base}/healthz") as resp:
                        status = resp.status
                    await asyncio.sleep(max(0.0, t0 + 3.0 - time.monotonic()))  # 3 s of hostile answers
                    window = time.monotonic() - t0
                    fps = {i: len([t for t in arrived[i] if t >= t0]) / window for i in ids}
                    events = await strict_get(http, f"{base}/api/events")
                    assert status == 503 and remote.state == "degraded", mode
                    fake.mode, t1 = "ok", time.monotonic()
                    batches = server.scheduler.batches
                    while remote.state != "ok" or server.scheduler.batches == batches:
                        assert time.monotonic() - t1 < 10, f"{mode}: never recovered ({remote.reason})"
                        await asyncio.sleep(0.02)
                    figures.append(f"{mode}: degraded in {to_degraded:.2f} s, streams "
                                   f"{', '.join(f'{fps[i]:.1f}' for i in ids)} fps, recovered in "
                                   f"{time.monotonic() - t1:.2f} s, {len(events['events'])} events")  # type: ignore[index]
                    assert min(fps.values()) >= 9.0, (mode, fps)
                # every JSON route a viewer can GET parses strictly
                event_id = (await strict_get(http, f"{base}/api/events"))["events"][0]["id"]  # type: ignore[index]
                app = server.runner.app  # type: ignore[union-attr]
                crawled = []
                for route in app.router.routes():
                    path = route.resource.canonical if route.resource is not None else ""
                    if route.method != "GET" or any(s in path for s in (".mjpg", ".jpg", ".mp4", "/stream", "{name", "{token")):
                        continue
                    url = base + path.replace("{camera_id}", "a").replace("{event_id}", event_id)
                    async with http.get(url) as resp:
                        if resp.content_type == "application/json":
                            strict_loads(await resp.text())
                            crawled.append(path)
                assert {"/api/events", "/api/cameras", "/healthz", "/api/cameras/{camera_id}/detections"} <= set(crawled)
                # the writes' answers too (an open server: each gets an empty JSON object), and the live feed
                for route in app.router.routes():
                    path = route.resource.canonical if route.resource is not None else ""
                    if route.method in ("GET", "HEAD", "*") or "{token" in path:
                        continue
                    url = base + path.replace("{camera_id}", "a").replace("{event_id}", event_id)
                    async with http.request(route.method, url, json={}) as resp:
                        if resp.content_type == "application/json":
                            strict_loads(await resp.text())
                            crawled.append(f"{route.method} {path}")
                assert any(c.startswith("POST ") for c in crawled), crawled
                async with http.get(f"{base}/metrics") as resp:
                    text = await resp.text()
                bad_line = f'camserver_inference_service_bad_answers_total{{url="grpc://127.0.0.1:{port}"}} '
                assert float(text.split(bad_line, 1)[1].split()[0]) == remote.bad_answers >= 18
                history = len(server.events.feed.items)
                data_lines = 0
                async with http.get(f"{base}/api/events/stream") as resp:
                    async with asyncio.timeout(10):
                        while data_lines < history:
                            line = (await resp.content.readline()).decode()
                            if line.startswith("data: "):
                                strict_loads(line[len("data: "):])
                                data_lines += 1
                figures.append(f"strict JSON: {len(crawled)} routes, {data_lines} live-feed changes")
                stop.set()
                await asyncio.gather(*feeders, *readers)
            for cam in cams:
                await cam.close()
    finally:
        stop.set()
        await asyncio.to_thread(fake.stop)
    print("\n".join(figures))


async def test_http_answers_are_bounded_before_they_are_read():
    """Over HTTP, a 20 MB answer is refused as a bad answer, declared (Content-Length) or chunked, at 1 MB read."""
    from tritonclient.utils import serialize_byte_tensor

    mode = {"now": "ok"}
    big = 20 * MB

    def infer_body(frames: int) -> tuple[bytes, int]:
        arrays = [("detections", "FP32", np.zeros((frames, 1, 6), np.float32)),
                  ("count", "INT32", np.zeros((frames, 1), np.int32)),
                  ("size", "INT32", np.full((frames, 2), 16, np.int32)),
                  ("error", "BYTES", np.array([[b""]] * frames, dtype=np.object_))]
        raws = [serialize_byte_tensor(a).item() if t == "BYTES" else a.tobytes() for _, t, a in arrays]
        header = json.dumps({"model_name": "detector", "outputs": [
            {"name": n, "datatype": t, "shape": list(a.shape), "parameters": {"binary_data_size": len(r)}}
            for (n, t, a), r in zip(arrays, raws)]}).encode()
        return header + b"".join(raws), len(header)

    async def ready(request: web.Request) -> web.Response:
        return web.Response()

    async def config(request: web.Request) -> web.Response:
        return web.json_response({"name": "detector", "max_batch_size": 8, "output": [{"name": o} for o in contract.OUTPUTS],
                                  "parameters": {"class_names": {"string_value": '["person", "car"]'}}})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"model_stats": [{"inference_count": 0, "execution_count": 0}]})

    async def infer(request: web.Request) -> web.StreamResponse:
        frames = json.loads((await request.read())[:int(request.headers["Inference-Header-Content-Length"])])
        body, header_length = infer_body(frames["inputs"][0]["shape"][0])
        headers = {"Inference-Header-Content-Length": str(header_length), "Content-Type": "application/octet-stream"}
        if mode["now"] == "declared":
            return web.Response(body=body + bytes(big), headers=headers)
        if mode["now"] == "chunked":
            resp = web.StreamResponse(headers=headers)
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            with contextlib.suppress(ConnectionError):
                await resp.write(body)
                for _ in range(big // 65536):
                    await resp.write(bytes(65536))
            return resp
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_get("/v2/models/detector/ready", ready)
    app.router.add_get("/v2/models/detector/config", config)
    app.router.add_get("/v2/models/detector/stats", stats)
    app.router.add_post("/v2/models/detector/infer", infer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    det = TritonDetector([f"http://127.0.0.1:{port}"], timeout_s=10.0)
    try:
        await det.start()
        assert det.state == "ok", det.reason
        jpeg = make_jpeg(1, 16, 16)
        assert await det.detect_jpegs([jpeg]) == [[]]
        for kind in ("declared", "chunked"):
            mode["now"] = kind
            started = time.monotonic()
            with pytest.raises(contract.BadAnswer, match="bytes the contract allows"):
                await det.detect_jpegs([jpeg])
            assert time.monotonic() - started < 5.0, kind
        assert det.bad_answers == 2 and det.failures == 2
    finally:
        await det.stop()
        await runner.cleanup()
