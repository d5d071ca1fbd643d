"""The process: serve until a signal (or a stage's death), the bound ports for scripts, the demo's companion."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Coroutine

from .app import CamServer
from .detect import ModelLoadError
from .detect.fallback import fallback_warning, offline_fallback
from .config import Config
from .config.writeback import ConfigFile
from .supervise import StageFailed, cancel_and_wait
from .web.connections import raise_descriptor_limit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """How a run ended, for the exit code."""

    hung_threads: bool  # a stalled detector thread still runs: the process must not wait for it
    restart: bool = False  # POST /api/restart asked for it: cli.py starts the process again


Companion = Callable[[CamServer], Coroutine[Any, Any, None]]


def write_ports(path: Path, ws_port: int, http_port: int) -> None:
    """{"ws": ..., "http": ...} written atomically: a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"ws": ws_port, "http": http_port}))
    os.replace(tmp, path)


async def start_server(config: Config, model_fallback: bool = False,
                       config_file: ConfigFile | None = None) -> CamServer:
    """A started server; with `model_fallback`, yolo11n.yaml when the default yolo11n.pt cannot download.

    Raises:
        ConfigError, ModelLoadError, StartupError: as CamServer.start.
    """
    server = CamServer.from_config(config, config_file=config_file)
    try:
        await server.start()
    except ModelLoadError as exc:
        fallback = offline_fallback(config.detect) if model_fallback else None
        if fallback is None:
            raise
        log.warning("%s", fallback_warning(str(exc)))
        server = CamServer.from_config(config.model_copy(update={"detect": fallback}), config_file=config_file)
        await server.start()
    return server


async def run(config: Config, ports_file: Path | None = None, companion: Companion | None = None, *,
              model_fallback: bool = False, config_file: ConfigFile | None = None, restartable: bool = False) -> RunResult:
    """Serve until SIGINT or SIGTERM (or a stage dies), then shut down gracefully.

    Args:
        config: the validated configuration.
        ports_file: where to write the bound ports once both listeners are up.
        companion: runs beside the server once it is up, and is cancelled first at shutdown
            (the demo's simulated camera).
        model_fallback: the model is the default one, not named by the user: if yolo11n.pt cannot be
            downloaded, run yolo11n.yaml (random weights) and say so instead of failing.
        config_file: the file the config came from (and the flags over it), for /api/config.
        restartable: the caller starts the process again when the result says `restart` (cli.main does);
            without it POST /api/restart answers 409.

    Raises:
        StageFailed: a stage's long-lived task died; the server stopped.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: a clean stop too, nothing reloads
        loop.add_signal_handler(sig, stop.set)
    raise_descriptor_limit()
    server = await start_server(config, model_fallback, config_file)
    server.restart.available = restartable
    try:
        if ports_file is not None:
            write_ports(ports_file, server.ws_port, server.http_port)
        extra = asyncio.create_task(companion(server), name="companion") if companion else None
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(server.supervisor.failure.wait()),
                   asyncio.create_task(server.restart.requested.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(extra, *waiters)
        log.info("shutting down")
    finally:
        await server.stop()
    failed = server.supervisor.failed
    if failed is not None:
        raise StageFailed(failed)
    restart = server.restart.requested.is_set() and not stop.is_set()
    log.info("stopped; starting again" if restart else "stopped")
    return RunResult(server.hung_threads, restart)
