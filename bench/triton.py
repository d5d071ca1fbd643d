"""Several camserver instances sharing one inference service (python -m camserver.infer) on this machine.

Each instance runs with `detect.backend = "triton"` and gets its own simulated VGA cameras (a
person walking through every frame, drawn as ../shared/testdata/shapes-yolo11n.pt knows it).
Prints per camera the frames/s detected (and the slowest camera's frames/s streamed), per instance
the batches it sent and their round-trip time, the mean batch the service formed (from Triton's
own statistics, over the measured window), and the CPU of every process in cores (camserver
instances; the service's Python process, Triton and its Python stub). The targets (issue 21): every camera at >= 95% of its fps, service mean
batch above 1.

    python -m bench.triton --instances 2 --cameras 3 --fps 10 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.capacity import camera, cameras_json, encode_cycle
from bench.fanout import Viewer, view
from bench.inferproc import InferProcess
from tests.serverproc import ServerProcess

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"


def instance_config(url: str, timeout_s: float, events: bool) -> str:
    """A config file for one camserver instance on the service."""
    folder = Path(tempfile.mkdtemp(prefix="camserver-bench-"))
    path = folder / "config.toml"
    path.write_text(f'[detect]\nbackend = "triton"\nurl = "{url}"\ntimeout_s = {timeout_s}\n'
                    f'[events]\nenabled = {"true" if events else "false"}\n'
                    f'[storage]\ndir = "{folder / "data"}"\n')
    return str(path)


async def service_stats(session: aiohttp.ClientSession, http: str, model: str) -> tuple[int, int]:
    """(frames inferred, executions) of the model so far, from Triton's statistics endpoint."""
    async with session.get(f"{http}/v2/models/{model}/stats") as resp:
        stats = (await resp.json())["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def model_alone(args: argparse.Namespace, frames: list[bytes], batch: int = 3) -> dict:
    """The service's own work without Triton: decode + detect (JpegModel.infer) on batches, in this process.

    The machine is shared and its speed varies from minute to minute; this phase, measured in the
    same run, is the yardstick the service's throughput is compared with.
    """
    from concurrent.futures import ThreadPoolExecutor

    from camserver.config import from_mapping
    from camserver.detect.backends import detector_factory
    from camserver.detect.backends import triton_contract as contract
    from camserver.infer.model import JpegModel

    d = from_mapping({"detect": {"model": args.model, "imgsz": args.imgsz}}).detect
    with ThreadPoolExecutor(2) as pool:
        model = JpegModel(detector_factory(d)(), pool)
        tensor = contract.pack_jpegs(frames[:batch])
        model.infer(tensor)
        n, cpu0, t0 = 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - t0 < args.alone_seconds:
            model.infer(tensor)
            n += batch
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"backend": model.detector.info.backend, "batch": batch, "frames_per_s": round(n / wall, 1),
            "cpu_ms_per_frame": round(cpu / n * 1000, 1)}


async def run(args: argparse.Namespace) -> dict:
    frames = encode_cycle(scene="person")  # the simulator draws the figure the shapes model was trained on
    alone = await asyncio.to_thread(model_alone, args, frames)
    print(json.dumps({"model_alone": alone}), flush=True)
    service = InferProcess("--model", args.model, "--imgsz", str(args.imgsz), "--instances", str(args.service_instances),
                           "--max-queue-delay-ms", str(args.max_queue_delay_ms), *args.service_args)
    await asyncio.to_thread(service.start)
    servers: list[ServerProcess] = []
    stop = asyncio.Event()
    try:
        for _ in range(args.instances):
            servers.append(await ServerProcess.start("--config", instance_config(service.grpc, 3.0, args.events)))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            ids = {s: [f"i{k}-cam{c}" for c in range(args.cameras)] for k, s in enumerate(servers)}
            sent = {cid: {} for cams in ids.values() for cid in cams}
            tasks = [asyncio.create_task(camera(s.ws(cid), frames, args.fps, sent[cid], stop))
                     for s, cams in ids.items() for cid in cams]
            viewers = []
            for s, cams in ids.items():
                for cid in cams:
                    for _ in range(args.viewers):
                        viewers.append(Viewer())
                        url = f"{s.http}/cameras/{cid}/stream.mjpg"
                        tasks.append(asyncio.create_task(view(session, url, sent[cid], viewers[-1], stop)))
            await asyncio.sleep(args.warmup)
            for v in viewers:
                v.frames, v.latencies_ms = 0, []
            before = {s: await cameras_json(session, s.http) for s in servers}
            stats0 = await service_stats(session, service.http, "detector")
            cpu0 = {id(s): s.cpu_seconds() for s in servers} | {"service": service.cpu_seconds()}
            t0 = time.monotonic()
            await asyncio.sleep(args.seconds)
            span = time.monotonic() - t0
            cpu1 = {id(s): s.cpu_seconds() for s in servers} | {"service": service.cpu_seconds()}
            stats1 = await service_stats(session, service.http, "detector")
            after = {s: await cameras_json(session, s.http) for s in servers}
            health = {}
            for s in servers:
                async with session.get(f"{s.http}/healthz") as resp:
                    health[s] = await resp.json()
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        def rate(key: str) -> dict[str, float]:
            return {cid: round((after[s][cid][key] - before[s][cid][key]) / span, 2) for s, cams in ids.items() for cid in cams}

        per_camera = rate("frames_detected")  # frames with boxes from the service
        streamed = rate("frames_processed")  # every frame is published, detected or not
        executions = stats1[1] - stats0[1]
        instances = []
        for k, s in enumerate(servers):
            det = health[s]["detection"]
            instances.append({
                "instance": k,
                "cpu_cores": round((cpu1[id(s)] - cpu0[id(s)]) / span, 2),
                "mean_batch_sent": det["remote"]["mean_batch_sent"],
                "rtt_ms_mean": det["remote"]["rtt_ms"],
                "rtt_ms_p50": det["remote"]["rtt_ms_p50"],
                "frames_undetected": det["frames_undetected"],
                "status": health[s]["status"],
            })
        service_cpu = {name: round((cpu1["service"].get(name, 0) - cpu0["service"].get(name, 0)) / span, 2)
                       for name in cpu1["service"]}
        fps = list(per_camera.values())
        return {
            "instances": args.instances, "cameras_per_instance": args.cameras, "fps": args.fps, "seconds": args.seconds,
            "model": args.model, "imgsz": args.imgsz, "events": args.events, "viewers_per_camera": args.viewers,
            "per_camera_fps": per_camera,
            "camera_fps_min": min(fps), "camera_fps_median": statistics.median(fps),
            "streamed_fps_min": min(streamed.values()),
            "frames_per_s_total": round(sum(fps), 1),
            "service_frames": stats1[0] - stats0[0], "service_executions": executions,
            "service_mean_batch": round((stats1[0] - stats0[0]) / executions, 2) if executions else None,
            "service_cpu_cores": service_cpu, "service_cpu_cores_total": round(sum(service_cpu.values()), 2),
            "service_cpu_ms_per_frame": round(sum(service_cpu.values()) * span / max(1, stats1[0] - stats0[0]) * 1000, 1),
            "model_alone": alone,
            "ratio_to_model_alone": round(sum(fps) / alone["frames_per_s"], 3),
            "camserver": instances,
            "viewer_fps_min": round(min(v.frames for v in viewers) / span, 2) if viewers else None,
            "targets_met": min(fps) >= 0.95 * args.fps and executions > 0 and (stats1[0] - stats0[0]) / executions > 1
            and all(i["frames_undetected"] == 0 for i in instances),
        }
    finally:
        stop.set()
        for s in servers:
            await s.stop()
        await asyncio.to_thread(service.stop)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_model = TESTDATA / "shapes-yolo11n.pt"
    p.add_argument("--model", default=str(default_model) if default_model.exists() else "yolo11n.yaml")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--instances", type=int, default=2, help="camserver instances")
    p.add_argument("--cameras", type=int, default=3, help="cameras per instance")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--viewers", type=int, default=0, help="annotated MJPEG viewers per camera")
    p.add_argument("--events", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--alone-seconds", type=float, default=10.0, help="the model alone, measured first")
    p.add_argument("--service-instances", type=int, default=1, help="model instances in the service")
    p.add_argument("--max-queue-delay-ms", type=float, default=2.0)
    p.add_argument("--service-args", nargs=argparse.REMAINDER, default=[], help="more camserver.infer flags")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
