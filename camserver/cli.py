"""Command line: flags over config.toml, logging set-up, exit codes.

Exit codes: 0 clean stop, 1 a stage failed while running, 2 bad configuration or flags,
3 could not start (model, port).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Coroutine, Protocol, Sequence

from . import __version__
from .config import LOG_LEVELS, Config, ConfigError, load, schema
from .config.writeback import ConfigFile
from .board.settings import check_board_settings
from .logsafe import RedactCredentials

if TYPE_CHECKING:
    from .run import RunResult

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_STARTUP = 3
DEFAULT_CONFIG = Path("config.toml")

# flag dest -> (table, key) in the config file
FLAG_KEYS = {
    "host": [("ingest", "host"), ("http", "host")],
    "ws_port": [("ingest", "port")],
    "http_port": [("http", "port")],
    "camera_id_default": [("ingest", "default_camera_id")],
    "model": [("detect", "model")],
    "device": [("detect", "device")],
    "conf": [("detect", "conf")],
    "iou": [("detect", "iou")],
    "imgsz": [("detect", "imgsz")],
    "workers": [("detect", "workers")],
    "backend": [("detect", "backend")],
    "max_batch": [("detect", "max_batch")],
    "camera_token": [("ingest", "token")],
    "viewer_token": [("http", "token")],
    "mdns": [("http", "mdns")],
    "log_level": [("log", "level")],
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every flag overrides the matching config.toml key."""
    p = argparse.ArgumentParser(
        prog="camserver",
        description="ESP32-CAM frames in over WebSocket, YOLO detection, annotated MJPEG out.",
    )
    p.add_argument("--config", type=Path, help="config file (default: ./config.toml if present)")
    p.add_argument("--host", help="address both listeners bind (ingest.host and http.host)")
    p.add_argument("--ws-port", type=int, help="camera WebSocket port (default 3001)")
    p.add_argument("--http-port", type=int, help="viewer HTTP port (default 8080)")
    p.add_argument("--default-camera-id", dest="camera_id_default", help="id of a camera on plain /ws")
    p.add_argument(
        "--model",
        help="yolo11n.pt (default), any path ultralytics accepts (.pt .yaml .onnx, OpenVINO folder, "
        "TensorRT engine, Triton URL), or 'none' to pass frames through",
    )
    p.add_argument("--device", help="auto (default), cpu, cuda:0, mps")
    p.add_argument("--conf", type=float, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--imgsz", type=int, help="inference size in pixels (default 640)")
    p.add_argument("--workers", type=int, help="detector threads, one model each (default 1)")
    p.add_argument("--backend", help="auto (default), torch, openvino, onnx, triton (a shared inference service at detect.url)")
    p.add_argument("--max-batch", type=int, help="frames (of different cameras) per inference; 0 = per backend")
    p.add_argument("--camera-token", help="token cameras must send (ingest.token)")
    p.add_argument("--viewer-token", help="token viewers must send (http.token)")
    p.add_argument("--mdns", action=argparse.BooleanOptionalAction,
                   help="advertise the server as camserver.local on the LAN (http.mdns, default on)")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="default info")
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    p.add_argument("--hash-password", action="store_true",
                   help="read a password (twice, without echo; from stdin when it is no terminal) and print its "
                        "hash for http.users, then exit")
    p.add_argument("--config-schema", action="store_true",
                   help="print the JSON schema of config.toml (made from the config models) and exit")
    p.add_argument("--ports-file", type=Path,
                   help='once both listeners are up, write {"ws": PORT, "http": PORT} here (for scripts using port 0)')
    p.add_argument("--version", action="version", version=f"camserver {__version__}")
    return p


def config_source(args: argparse.Namespace) -> tuple[Path | None, dict[str, dict[str, Any]]]:
    """The config file the flags name (or ./config.toml if present) and the flags' overrides, table by table."""
    path = args.config
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    overrides: dict[str, dict[str, Any]] = {}
    for dest, keys in FLAG_KEYS.items():
        value = getattr(args, dest)
        if value is not None:
            for table, key in keys:
                overrides.setdefault(table, {})[key] = value
    return path, overrides


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the config file and apply the flags over it. Raises ConfigError."""
    config = load(*config_source(args))
    check_board_settings(config)
    return config


def setup_logging(level: str) -> None:
    """Log lines to stderr with time, level and module."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # every line, the libraries' request lines included
        handler.addFilter(RedactCredentials())
    if level != "debug":
        # camserver logs connections itself; the libraries' own lines would double them, and the
        # access log would print a line for every poll of the page
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def check_config(config: Config, name: str) -> int:
    """`--check-config`: the values are valid (they loaded); now the model file, storage.dir and labels.

    Prints each warning and each error on a line of its own; exit 0, or 2 when there is an error.
    """
    from .config.preflight import preflight

    errors, warnings = preflight(config)
    for warning in warnings:
        print(f"{name}: warning: {warning}")
    for error in errors:
        print(f"{name}: {error}", file=sys.stderr)
    if errors:
        return EXIT_CONFIG
    print(f"{name}: configuration OK" + (f" ({len(warnings)} warning{'s' * (len(warnings) > 1)})" if warnings else ""))
    return 0


class Serve(Protocol):
    """What run_command runs: app.run, or the demo's run_demo."""

    def __call__(self, config: Config, ports_file: Path | None, *, model_fallback: bool,
                 config_file: ConfigFile | None = None) -> Coroutine[Any, Any, RunResult]:
        """Serve until SIGINT/SIGTERM. `model_fallback`: no --model was given, so the default yolo11n.pt may
        give way to yolo11n.yaml offline (detect/fallback.py). `config_file`: what /api/config writes back."""
        ...


def hash_password_command(name: str) -> int:
    """--hash-password: the password from the terminal (asked twice, not echoed) or stdin's first line."""
    import getpass

    from .passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print(f"{name}: the two passwords differ", file=sys.stderr)
            return EXIT_CONFIG
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print(f"{name}: an empty password cannot be hashed", file=sys.stderr)
        return EXIT_CONFIG
    print(hash_password(password))
    return 0


def run_command(argv: Sequence[str] | None, serve: Serve, name: str) -> int:
    """Parse flags, load the config, set up logging and run `serve`; returns the exit code.

    Args:
        argv: the command line (None: sys.argv).
        serve: the coroutine function that runs until SIGINT/SIGTERM, given the config, --ports-file and
            whether the model may fall back (no --model given).
        name: prefix of the one-line error messages.
    """
    args = build_parser().parse_args(argv)
    if args.hash_password:
        return hash_password_command(name)
    if args.config_schema:
        print(json.dumps(schema(), indent=2))
        return 0
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        for line in exc.lines:  # every mistake at once, one line each
            print(f"{name}: {line}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        return check_config(config, name)
    setup_logging(config.log.level)
    from .app import StartupError
    from .detect import ModelLoadError
    from .supervise import StageFailed

    try:
        path, overrides = config_source(args)
        config_file = ConfigFile(path.resolve(), overrides) if path is not None else None
        result = asyncio.run(serve(config, args.ports_file, model_fallback=args.model is None, config_file=config_file))
    except ConfigError as exc:  # found only when starting: storage.dir cannot be written
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (ModelLoadError, StartupError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except StageFailed as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    if result.restart and not result.hung_threads:
        restart_process()
    if result.hung_threads:
        # a detector thread stuck in native code would keep the interpreter from exiting
        print(f"{name}: a stalled detector thread is still running; exiting without waiting for it", file=sys.stderr)
        sys.stdout.flush()
        os._exit(0)
    return 0


def restart_process() -> None:
    """The same command line again in this process (POST /api/restart, once every stop step ran): never returns."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `camserver` and `python -m camserver`; returns the exit code.

    Only the process's own command line (argv None) can be started again by POST /api/restart."""
    from .run import run

    return run_command(argv, functools.partial(run, restartable=argv is None), "camserver")
