"""`python -m camserver.infer`: the detector served by NVIDIA Triton through PyTriton.

Cameras' JPEGs come in as BYTES, detections go out (detect/backends/triton_contract.py); Triton's dynamic batcher
merges the requests of every camserver instance into batches of up to `--max-batch` frames,
waiting at most `--max-queue-delay-ms` for more, and `--instances` model instances run batches
side by side. The model and its backend are chosen exactly as camserver chooses its local one.

Each JPEG is checked as camserver's ingest checks it (JPEG only, `--max-frame-bytes`,
`--max-width`, `--max-height`) before anything decodes it; one that fails is refused on its own.
It listens on 127.0.0.1 unless told otherwise; with a token (`--token-file`, or the environment
variable CAMSERVER_INFER_TOKEN) every API but health needs it in Triton's `triton-access-token`
header, which camserver sends from `detect.triton_token`. Listening beyond loopback with no token
is allowed, with a warning at every start.

Exit codes: 0 clean stop, 2 bad flags, 3 could not start (model, PyTriton, environment).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from ..config import BACKENDS, ConfigError, DetectConfig, IngestConfig, from_mapping
from ..detect.base import Detector, ModelLoadError
from ..detect.cores import usable_cores
from ..detect.backends import triton_contract as contract
from ..detect.backends.ultralytics import UltralyticsDetector
from ..integrations.lan import is_loopback
from . import gpu, pytriton_env
from .model import FrameLimits, JpegModel, class_names

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_STARTUP = 3
CPU_MAX_BATCH = 8
CUDA_MAX_BATCH = 32
EXIT_TIMEOUT_S = 5  # Triton waits this long for in-flight requests when stopping (its default is 30)
LIMITS = FrameLimits()  # camserver's ingest defaults
TOKEN_ENV = "CAMSERVER_INFER_TOKEN"
# with a token, every API needs it but health (liveness and readiness probes)
TOKEN_ENDPOINTS = ["metadata", "inference", "shared-memory", "model-config", "model-repository", "statistics",
                   "trace", "logging"]


def build_parser() -> argparse.ArgumentParser:
    """The service's flags."""
    p = argparse.ArgumentParser(prog="camserver-infer", description="camserver's detector on NVIDIA Triton (PyTriton).")
    p.add_argument("--model", default="yolo11n.pt", help="as camserver's --model: .pt, .yaml, .onnx, OpenVINO folder...")
    p.add_argument("--imgsz", type=int, default=640, help="inference size (default 640)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda:0")
    p.add_argument("--backend", default="auto", choices=[b for b in BACKENDS if b != "triton"],
                   help="as camserver's: auto = torch fp16 on CUDA, OpenVINO on x86 CPUs, torch elsewhere")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--cache-dir", default="", help="exported models (default ~/.cache/camserver)")
    p.add_argument("--model-name", default=contract.DEFAULT_MODEL_NAME, help="the Triton model name (default detector)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address Triton's gRPC and HTTP listeners bind (default 127.0.0.1; 0.0.0.0 for the LAN)")
    p.add_argument("--token-file", type=Path, default=None,
                   help=f"file holding the access token clients must send (default: ${TOKEN_ENV}; none: no token)")
    p.add_argument("--max-frame-bytes", type=int, default=LIMITS.max_bytes,
                   help=f"JPEGs larger are refused, as camserver's ingest.max_frame_bytes (default {LIMITS.max_bytes})")
    p.add_argument("--max-width", type=int, default=LIMITS.max_width,
                   help=f"JPEGs wider are refused before decoding (default {LIMITS.max_width})")
    p.add_argument("--max-height", type=int, default=LIMITS.max_height,
                   help=f"JPEGs taller are refused before decoding (default {LIMITS.max_height})")
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--metrics-port", type=int, default=8002, help="Triton's Prometheus metrics")
    p.add_argument("--instances", type=int, default=1, help="model instances, each running its own batches (default 1)")
    p.add_argument("--max-batch", type=int, default=0, help=f"frames per inference; 0 = {CUDA_MAX_BATCH} on CUDA, {CPU_MAX_BATCH} on CPU")
    p.add_argument("--preferred-batch", type=int, nargs="*", default=None,
                   help="batch sizes the batcher aims for (default: 4, 8, ... up to --max-batch)")
    p.add_argument("--max-queue-delay-ms", type=float, default=2.0, help="how long a request may wait for a fuller batch (default 2)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting at most; more are refused at once (default 64)")
    p.add_argument("--decode", choices=("auto", "cpu", "gpu"), default="auto",
                   help="where JPEGs are decoded: auto = on the GPU (torchvision/nvJPEG) for torch on CUDA, else OpenCV")
    p.add_argument("--stub-env", type=Path, default=None, help="numpy<2 environment for Triton's Python stub")
    p.add_argument("--workspace", type=Path, default=None,
                   help="PyTriton's working folder, created (must not exist); default a fresh one in ~/.cache/pytriton")
    p.add_argument("--prepare", action="store_true", help="create the stub environment (pip installs numpy<2) and exit")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def detect_config(args: argparse.Namespace) -> DetectConfig:
    """The flags as camserver's [detect] table, validated the same way. Raises ConfigError."""
    table = {"model": args.model, "imgsz": args.imgsz, "device": args.device, "backend": args.backend,
             "conf": args.conf, "iou": args.iou, "cache_dir": args.cache_dir}
    return from_mapping({"detect": table}).detect


def frame_limits(args: argparse.Namespace) -> FrameLimits:
    """The JPEG limits, checked with the ranges of camserver's [ingest] table. Raises ConfigError."""
    table = {"max_frame_bytes": args.max_frame_bytes, "max_width": args.max_width, "max_height": args.max_height}
    ingest: IngestConfig = from_mapping({"ingest": table}).ingest
    return FrameLimits(ingest.max_frame_bytes, ingest.max_width, ingest.max_height)


def access_token(args: argparse.Namespace) -> str:
    """The access token from --token-file or the environment; "" for none. Raises ConfigError."""
    if args.token_file is not None:
        try:
            token: str = args.token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("--token-file", str(args.token_file), f"cannot be read ({exc})") from None
        if not token:
            raise ConfigError("--token-file", str(args.token_file), "is empty")
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if token and (len(token) < 8 or any(c.isspace() or not c.isprintable() for c in token)):
        raise ConfigError("--token-file" if args.token_file else TOKEN_ENV, "(hidden)",
                          "must be at least 8 characters without spaces")
    return token


def security_config(token: str, host: str) -> Any:
    """PyTriton's token restriction: with a token, every API but health; without, only the admin ones."""
    from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, TritonSecurityConfig

    if token:
        return TritonSecurityConfig(access_token=token, restricted_endpoints=TOKEN_ENDPOINTS)
    if not is_loopback(host):
        log.warning("the service listens on %s with no token: anyone who reaches it can run inference on any "
                    "picture and read its model; set --token-file (and detect.triton_token in camserver)", host)
    # PyTriton guards every admin endpoint with a random token; statistics (counts and times per
    # model, read-only) stay open so that camserver can show the batch size the service forms
    return TritonSecurityConfig(restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"])


def preferred_sizes(max_batch: int, given: Sequence[int] | None) -> list[int]:
    """The batcher's preferred batch sizes: as given (capped), or 4, 8, ... up to max_batch."""
    if given:
        return sorted({min(max(1, b), max_batch) for b in given})
    sizes, b = [], 4
    while b < max_batch:
        sizes.append(b)
        b *= 2
    return sizes + [max_batch]


def load_models(d: DetectConfig, instances: int, decode: str,
                limits: FrameLimits = FrameLimits()) -> tuple[list[JpegModel], str, ThreadPoolExecutor]:
    """`instances` detectors loaded as camserver loads its own, wrapped to take JPEGs.

    Returns the models, where decoding runs ("cpu (OpenCV)" or the device), and the decode pool.
    Raises ModelLoadError.
    """
    from ..detect.backends import detector_factory

    load = detector_factory(d)
    decoders = ThreadPoolExecutor(max_workers=max(2, usable_cores()), thread_name_prefix="decode")
    models = []
    where = "cpu (OpenCV)"
    for _ in range(instances):
        detector: Detector = load()
        device = detector.info.device
        on_gpu = detector.info.backend == "torch" and device.startswith("cuda")
        use_gpu = decode == "gpu" or (decode == "auto" and on_gpu)
        if use_gpu and not (on_gpu and gpu.available()):
            raise ModelLoadError("--decode gpu needs the torch backend on CUDA and torchvision with decode_jpeg")
        jpeg_gpu = None
        if use_gpu:
            assert isinstance(detector, UltralyticsDetector)  # on_gpu: the torch backend
            jpeg_gpu = gpu.DeviceJpegDetector(detector.model, detector.predict_args, d.imgsz, device)
            where = f"{device} (torchvision decode_jpeg)"
        model = JpegModel(detector, decoders, jpeg_gpu, limits)
        warm_up(model)
        models.append(model)
    return models, where, decoders


def warm_up(model: JpegModel) -> None:
    """One inference on a blank VGA JPEG before the service says it serves.

    The first inference of a loaded model sets up ultralytics' predictor (and compiles an exported
    model), which takes seconds: a client's first request after a (re)start would wait for it.
    """
    import cv2
    import numpy as np

    ok, jpeg = cv2.imencode(".jpg", np.full((480, 640, 3), 114, np.uint8))
    if not ok:
        raise ModelLoadError("could not encode the warm-up frame")
    started = time.monotonic()
    try:
        model.detect_jpegs([jpeg.tobytes()])
    except Exception as exc:
        raise ModelLoadError(f"the model failed its first inference: {exc}") from exc
    log.info("model warmed up in %.1f s", time.monotonic() - started)


def bind(triton: Any, name: str, models: list[JpegModel], max_batch: int, args: argparse.Namespace) -> None:
    """Bind the JPEG models to Triton with the dynamic batcher, and publish the class names."""
    import numpy as np
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, Tensor

    batcher = DynamicBatcher(
        max_queue_delay_microseconds=int(args.max_queue_delay_ms * 1000),
        preferred_batch_size=preferred_sizes(max_batch, args.preferred_batch),
        default_queue_policy=QueuePolicy(max_queue_size=args.max_queue),
    )
    triton.bind(
        model_name=name,
        infer_func=[batch(m.infer) for m in models],  # one callable per instance: Triton runs them side by side
        inputs=[Tensor(name=contract.INPUT, dtype=np.bytes_, shape=(1,))],
        outputs=[
            Tensor(name=contract.DETECTIONS, dtype=np.float32, shape=(-1, 6)),
            Tensor(name=contract.COUNT, dtype=np.int32, shape=(1,)),
            Tensor(name=contract.SIZE, dtype=np.int32, shape=(2,)),
            Tensor(name=contract.ERROR, dtype=np.bytes_, shape=(1,)),
        ],
        config=ModelConfig(max_batch_size=max_batch, batcher=batcher),
        strict=False,
    )
    # PyTriton has no public way to add model parameters; its config object is built once and kept,
    # and its backend ignores keys it does not know, so the names ride along in the model config
    names = contract.class_names_parameter(class_names(models[0].detector))
    for model in triton._model_manager.models:
        if model.model_name == name:
            model._get_triton_model_config().backend_parameters[contract.CLASS_NAMES_PARAMETER] = names


def serve(args: argparse.Namespace) -> int:
    """Load, start Triton, serve until SIGINT/SIGTERM or until Triton dies; returns the exit code."""
    problem = pytriton_env.platform_problem()
    if problem:
        print(f"camserver-infer: {problem}", file=sys.stderr)
        return EXIT_STARTUP
    stub_env = None
    if pytriton_env.numpy_major() >= 2:
        stub_env = args.stub_env or pytriton_env.default_stub_env()
        problem = pytriton_env.stub_env_problem(stub_env)
        if problem:
            print(f"camserver-infer: {problem}", file=sys.stderr)
            return EXIT_STARTUP
    try:
        d = detect_config(args)
        limits = frame_limits(args)
        token = access_token(args)
    except ConfigError as exc:
        print(f"camserver-infer: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log.info("loading model %s (%d instance%s)", d.model, args.instances, "s" if args.instances > 1 else "")
    try:
        models, decode_where, decoders = load_models(d, args.instances, args.decode, limits)
    except ModelLoadError as exc:
        print(f"camserver-infer: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    info = models[0].detector.info
    max_batch = args.max_batch or (CUDA_MAX_BATCH if info.device.startswith("cuda") else CPU_MAX_BATCH)

    pytriton_env.configure_triton_child(stub_env)
    from pytriton.triton import Triton, TritonConfig

    config = TritonConfig(
        http_address=args.host, http_port=args.http_port, grpc_address=args.host, grpc_port=args.grpc_port,
        metrics_port=args.metrics_port, exit_timeout_secs=EXIT_TIMEOUT_S,
        log_verbose=1 if args.log_level == "debug" else 0,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    triton = Triton(config=config, workspace=args.workspace, security_config=security_config(token, args.host))
    try:
        bind(triton, args.model_name, models, max_batch, args)
        triton.run()
    except Exception as exc:  # PyTriton raises its own kinds for a port in use, a server that died...
        print(f"camserver-infer: Triton did not start: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        triton.stop()
        decoders.shutdown(wait=False)
        return EXIT_STARTUP
    log.info("serving model %s as %r: grpc://%s:%d http://%s:%d (%s on %s, %s; decode on %s; max batch %d, "
             "%d instance%s, queue delay %.1f ms; JPEGs up to %dx%d and %d bytes; %s)", d.model, args.model_name, args.host, args.grpc_port, args.host,
             args.http_port, info.backend, info.device, info.precision, decode_where, max_batch, args.instances,
             "s" if args.instances > 1 else "", args.max_queue_delay_ms, limits.max_width, limits.max_height,
             limits.max_bytes, "token required" if token else "no token")
    code = 0
    while not stop.wait(1.0):
        if not triton.is_alive():
            log.error("the Triton server stopped by itself; exiting")
            code = EXIT_STARTUP
            break
    log.info("stopping")
    triton.stop()
    decoders.shutdown(wait=False)
    log.info("stopped")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `camserver-infer` and `python -m camserver.infer`; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        stream=sys.stderr)
    if args.log_level != "debug":
        logging.getLogger("pytriton").setLevel(logging.WARNING)  # it logs every step of its start at INFO
    if args.prepare:
        env = args.stub_env or pytriton_env.default_stub_env()
        pytriton_env.prepare_stub_env(env)
        print(f"camserver-infer: Triton's Python stub environment is ready: {env}")
        return 0
    if args.instances < 1 or args.max_batch < 0 or args.max_queue < 1 or args.max_queue_delay_ms < 0:
        print("camserver-infer: --instances and --max-queue must be >= 1, --max-batch and --max-queue-delay-ms >= 0",
              file=sys.stderr)
        return EXIT_CONFIG
    return serve(args)
