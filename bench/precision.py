"""Precision benchmark: every OpenVINO precision candidate on the same frames, in one run, on this CPU.

For the runtime's default (what camserver compiled before detect.precision), f32, bf16, fp16 and
int8 (NNCF-calibrated with camserver.detect.calibrate, when nncf is installed) it prints what the
compiled model really runs (read back), ms per frame and frames/s with 1 thread, 2 threads, 2
streams x 1 thread (two requests in flight) and batch 2 (the IR reshaped), interleaved over
rounds (medians); agreement with f32 on synthetic scenes (tuning.agreement); mAP50 and mAP50-95
of the shapes model on a labelled set from ../shared/testdata/make_shapes.py (ultralytics val());
which candidate `auto` picks (precision x mode at 2 threads: one stream, 2 streams, batch 2, and the gate,
as the tuner does) and whether
the detector reports what its compiled model runs. Then the same in a child process with
ONEDNN_MAX_CPU_ISA capped (default AVX2; on an AVX2-only CPU that changes nothing, and says so).

    python -m bench.precision --model ../shared/testdata/shapes-yolo11n.pt --imgsz 320

Last lines: `auto_vs_default=X auto_vs_f32=Y reported_matches=1|0 map50_95_drop=Z`, one per emulated
CPU, then the real CPU's as the very last line; ratios of frames/s with the serving setup (2 threads).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = next((p for p in (ROOT.parent / "shared" / "testdata", ROOT.parent.parent / "shared" / "testdata")
                 if p.exists()), ROOT.parent / "shared" / "testdata")
MODES = ("1 thread", "2 threads", "2 streams x 1 thread", "batch 2")
CANDIDATES = ("default", "f32", "bf16", "fp16", "int8")


def cpu_name() -> str:
    """The CPU's model name and its relevant flags, from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma", "avx_vnni")]
    return f"{name}, {os.cpu_count()} cores, flags {' '.join(wanted) or 'none of avx2/avx512/amx'}"


def compiled_for(folder: Path, precision: str, mode: str) -> Any:
    """The IR compiled for one candidate and execution mode."""
    import openvino

    from camserver.detect.backends import openvino as ov

    core = openvino.Core()
    model = core.read_model(str(ov.model_xml(folder)))
    config = ov.compile_config("auto" if precision == "default" else precision, 1 if mode == "1 thread" else 2)
    if mode == "2 streams x 1 thread":
        config.update({"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2, "INFERENCE_NUM_THREADS": 2})
    if mode == "batch 2":
        shape = list(model.input(0).get_shape())
        model.reshape([2, *shape[1:]])
    return core.compile_model(model, "CPU", config)


def timed(compiled: Any, mode: str, tensors: list[np.ndarray], frames: int) -> float:
    """ms per frame over `frames` frames in this mode (after one untimed call)."""
    import openvino

    if mode == "2 streams x 1 thread":
        queue = openvino.AsyncInferQueue(compiled, 2)
        queue.start_async({0: tensors[0]})
        queue.wait_all()
        started = time.perf_counter()
        for i in range(frames):
            queue.start_async({0: tensors[i % len(tensors)]})
        queue.wait_all()
        return (time.perf_counter() - started) / frames * 1000
    request = compiled.create_infer_request()
    if mode == "batch 2":
        pairs = [np.concatenate([tensors[i % len(tensors)], tensors[(i + 1) % len(tensors)]]) for i in range(0, frames, 2)]
        request.infer({0: pairs[0]})
        started = time.perf_counter()
        for pair in pairs:
            request.infer({0: pair})
        return (time.perf_counter() - started) / (2 * len(pairs)) * 1000
    request.infer({0: tensors[0]})
    started = time.perf_counter()
    for i in range(frames):
        request.infer({0: tensors[i % len(tensors)]})
    return (time.perf_counter() - started) / frames * 1000


def labelled_set(cache: Path, count: int) -> Path:
    """The shapes validation set (generated once): its data.yaml."""
    out = cache / f"shapes-val-{count}"
    if not (out / "data.yaml").exists():
        subprocess.run([sys.executable, str(TESTDATA / "make_shapes.py"), str(out), "--train", "0", "--val", str(count)],
                       check=True, capture_output=True)
    return out / "data.yaml"


def map_of(folder: Path, data: Path, imgsz: int) -> tuple[float, float]:
    """(mAP50, mAP50-95) of an OpenVINO folder through ultralytics val() (which compiles at the runtime's default)."""
    from ultralytics import YOLO

    metrics = YOLO(str(folder), task="detect").val(data=str(data), imgsz=imgsz, batch=1, verbose=False, plots=False,
                                                   project=str(folder.parent / ".val"), name="run", exist_ok=True)
    return float(metrics.box.map50), float(metrics.box.map)


def run(args: argparse.Namespace) -> str:
    """The benchmark on this process's CPU (as capped by its environment); the summary line."""
    from camserver.config import from_mapping
    from camserver.detect.backends import export_shape
    from camserver.detect.backends import openvino as ov
    from camserver.detect.backends.export import exported_model, int8_path
    from camserver.detect.backends.ultralytics import quiet_ultralytics
    from camserver.detect.tuner import detections, held_out, letterboxed
    from camserver.detect.tuning import Candidate, agreement, choose

    quiet_ultralytics()
    cache = Path(args.cache)
    shape = export_shape(args.imgsz)
    d = from_mapping({"detect": {"model": args.model, "imgsz": args.imgsz, "cache_dir": str(cache)}}).detect
    folders = {p: exported_model(args.model, "openvino", shape, ov.runtime_version(), cache) for p in CANDIDATES[:4]}
    int8 = int8_path(args.model, shape, ov.runtime_version(), cache)
    if not int8.exists() and importlib.util.find_spec("nncf") is not None:
        from camserver.detect.calibrate import calibrate

        calibrate(d, [], 300, cache)
    if int8.exists():
        folders["int8"] = int8
    else:
        print("int8: skipped, nncf is not installed (pip install 'camserver[int8]')")
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "not capped")
    print(f"CPU: {cpu_name()}; ONEDNN_MAX_CPU_ISA={isa}; OpenVINO {ov.runtime_version()}, capabilities "
          f"{', '.join(ov.cpu_capabilities())}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    tensors = [letterboxed(im, shape) for im in held_out([], args.frames)]
    compiled = {(p, m): compiled_for(f, p, m) for p, f in folders.items() for m in MODES}
    for p in folders:
        print(f"{p:8s} runs {ov.executed(compiled[(p, '2 threads')])}")
    samples: dict[tuple[str, str], list[float]] = {k: [] for k in compiled}
    for _ in range(args.rounds):  # interleaved: a load spike hits every candidate alike
        for key, model in compiled.items():
            samples[key].append(timed(model, key[1], tensors, args.frames))
    reference = detections(compiled[("f32", "1 thread")], tensors, d.conf, d.iou)
    data = labelled_set(cache, args.labelled)
    maps = {p: map_of(f, data, args.imgsz) for p, f in folders.items() if p in ("f32", "int8")}
    print(f"{'candidate':9s} {'mode':22s} {'ms/frame':>9s} {'frames/s':>9s}")
    for (p, m), values in samples.items():
        ms = statistics.median(values)
        print(f"{p:9s} {m:22s} {ms:9.2f} {1000 / ms:9.1f}")
    candidates = []
    tuned = {"2 threads": "latency", "2 streams x 1 thread": "streams", "batch 2": "batch2"}  # as the tuner measures
    for p in folders:
        if p == "default":
            continue
        found = detections(compiled[(p, "1 thread")], tensors, d.conf, d.iou)
        agree, diff = agreement(reference, found)
        runs = ov.executed(compiled[(p, "1 thread")])["precision"]
        for m, mode in tuned.items():
            c = Candidate(p, runs, samples[(p, m)], agree, diff, mode=mode)
            if p != "f32" and runs == "fp32":
                c.skipped = "runs as fp32 on this CPU"
            candidates.append(c)
        extra = f", mAP50 {maps[p][0]:.4f}, mAP50-95 {maps[p][1]:.4f}" if p in maps else ""
        print(f"{p}: executes {runs}, agreement with f32 {agree:.4f}, mean score diff {diff:.4f}{extra}"
              + (" (runs as fp32 on this CPU)" if p != "f32" and runs == "fp32" else ""))
    winner, why = choose(candidates)
    assert winner is not None
    print(f"auto picks {winner.name}: {why}")
    serving = "2 threads"
    ms = {p: statistics.median(samples[(p, serving)]) for p in folders}
    picked = statistics.median(winner.samples_ms)
    detector = ov.OpenVINODetector(str(folders[winner.precision]), d.conf, d.iou, shape, 2, winner.precision, 0,
                                   winner.mode)
    real = ov.executed(detector.compiled)
    matches = int(detector.info.precision == real["precision"]
                  and all(detector.executed[k] == v for k, v in real.items()))
    drop = maps["f32"][1] - maps.get(winner.precision, maps["f32"])[1]
    return (f"auto_vs_default={ms['default'] / picked:.3f} auto_vs_f32={ms['f32'] / picked:.3f} "
            f"reported_matches={matches} map50_95_drop={drop:.4f}")


def main(argv: list[str] | None = None) -> int:
    """Run on this CPU, then in a child per capped ISA; the summary lines last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(TESTDATA / "shapes-yolo11n.pt"))
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--frames", type=int, default=8, help="frames per timed chunk")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--labelled", type=int, default=100, help="images in the labelled set for mAP")
    parser.add_argument("--cache", default="/tmp/camserver-bench-precision")
    parser.add_argument("--isa", default="AVX2", help="comma-separated ONEDNN_MAX_CPU_ISA values to emulate; '' none")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    started = time.monotonic()
    real = run(args)
    if args.child:
        print(real)
        return 0
    emulated = []
    for isa in [i for i in args.isa.split(",") if i]:
        print(f"--- again with ONEDNN_MAX_CPU_ISA={isa}"
              + (" (this CPU has no AVX-512: capping at AVX2 changes nothing)" if "avx512" not in cpu_name() else ""))
        child = ["--model", args.model, "--imgsz", str(args.imgsz), "--frames", str(args.frames), "--rounds",
                 str(args.rounds), "--labelled", str(args.labelled), "--cache", args.cache, "--child"]
        out = subprocess.run([sys.executable, "-m", "bench.precision", *child], cwd=ROOT,
                             env={**os.environ, "ONEDNN_MAX_CPU_ISA": isa}, capture_output=True, text=True, check=False)
        print(out.stdout.rstrip())
        if out.returncode:
            print(out.stderr[-2000:])
        last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "failed"
        emulated.append(f"{last} (ONEDNN_MAX_CPU_ISA={isa})")
    print(f"elapsed {time.monotonic() - started:.0f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for line in emulated:
        print(line)
    print(real)  # the real CPU's figures: the last line
    return 0


if __name__ == "__main__":
    sys.exit(main())
