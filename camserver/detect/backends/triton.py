"""The triton backend: detection on a shared inference service (`python -m camserver.infer`).

camserver sends each batch's camera JPEGs as they arrived (no decode here, no detector thread)
over tritonclient's asyncio gRPC client (or HTTP), and gets boxes back (detect/backends/triton_contract.py).

The service may be down at start-up or vanish later. Then the detector is `degraded` with the
reason, logs one line per change of state, refuses batches at once (the scheduler publishes those
frames without boxes; nothing queues here), and a supervisor task reconnects with backoff, trying
the configured URLs in order. While connected, it polls the service's statistics every second:
that notices a lost service with no frames flowing, and gives the mean batch the service forms
from the requests of every camserver instance.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

import numpy as np

from . import triton_contract as contract
from ...supervise import Spawn, cancel_and_wait
from ..base import BackendInfo, Detection, DetectorUnavailable, first_line
from ..frames import draw_detections

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8  # frames per request; the service's batcher merges requests of every instance
BACKOFF_MIN_S = 0.25
BACKOFF_MAX_S = 2.0  # short: detection should resume within seconds of the service's return
POLL_INTERVAL_S = 1.0
ERRORS_BEFORE_DEGRADED = 3  # batches in a row the service answered with an error
# gRPC statuses and message parts that mean the service (or the model) is not there, not that a batch failed
LOST_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "NOT_FOUND")
LOST_MESSAGES = ("unknown model", "not ready", "failed to connect", "connection refused", "stub process")
BUSY_MESSAGE = "exceeds maximum queue size"


@dataclass(frozen=True)
class Endpoint:
    """One configured service URL, split for the client; `safe` is the URL without credentials."""

    url: str = field(repr=False)  # may hold credentials: never logged
    grpc: bool
    tls: bool
    hostport: str
    safe: str
    headers: dict[str, str] = field(repr=False)


def parse_url(url: str) -> Endpoint:
    """grpc://, grpcs://, http:// or https:// [user:password@] host:port; credentials become basic auth."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("grpc", "grpcs", "http", "https") or not parts.hostname:
        raise ValueError(f"not a grpc:// or http:// URL: {url!r}")
    default_port = 8001 if scheme.startswith("grpc") else 8000
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    hostport = f"{host}:{parts.port or default_port}"
    headers = {}
    if parts.username is not None:
        token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
        headers["authorization"] = f"Basic {token}"
    return Endpoint(url, scheme.startswith("grpc"), scheme.endswith("s"), hostport, f"{scheme}://{hostport}", headers)


def _probe_jpeg() -> bytes:
    import cv2

    return cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes()


class _Client:
    """tritonclient's asyncio gRPC or HTTP client behind the few calls this backend makes."""

    def __init__(self, ep: Endpoint, timeout_s: float) -> None:
        self.ep = ep
        self.timeout_s = timeout_s
        if ep.grpc:
            import tritonclient.grpc as module
            import tritonclient.grpc.aio as aio

            self.client: Any = aio.InferenceServerClient(ep.hostport, ssl=ep.tls)
            self.as_json: dict[str, Any] = {"as_json": True}
        else:
            import tritonclient.http as module  # type: ignore[no-redef]
            import tritonclient.http.aio as aio  # type: ignore[no-redef]

            self.client = aio.InferenceServerClient(ep.hostport, ssl=ep.tls, conn_timeout=timeout_s)
            self.as_json = {}
        self.module = module

    async def check(self, model: str) -> dict[str, Any]:
        """Server ready, model ready: the model's configuration. Raises DetectorUnavailable."""
        if not await self.client.is_server_ready(headers=self.ep.headers):
            raise DetectorUnavailable("the server is not ready")
        if not await self.client.is_model_ready(model, headers=self.ep.headers):
            raise DetectorUnavailable(f"model {model!r} is not ready")
        config: dict[str, Any] = await self.client.get_model_config(model, headers=self.ep.headers, **self.as_json)
        return config.get("config", config)  # gRPC wraps it

    async def statistics(self, model: str) -> tuple[int, int]:
        """The model's (frames inferred, executions) since the service started."""
        stats = await self.client.get_inference_statistics(model, headers=self.ep.headers, **self.as_json)
        model_stats = (stats.get("model_stats") or [{}])[0]
        return int(model_stats.get("inference_count", 0)), int(model_stats.get("execution_count", 0))

    async def infer(self, model: str, jpegs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """One request: the JPEGs in, the `detections` and `count` outputs."""
        tensor = self.module.InferInput(contract.INPUT, [len(jpegs), 1], "BYTES")
        tensor.set_data_from_numpy(contract.pack_jpegs(jpegs))
        outputs = [self.module.InferRequestedOutput(name) for name in (contract.DETECTIONS, contract.COUNT)]
        extra = {"client_timeout": self.timeout_s} if self.ep.grpc else {}
        result = await self.client.infer(model, [tensor], outputs=outputs, headers=self.ep.headers, **extra)
        return result.as_numpy(contract.DETECTIONS), result.as_numpy(contract.COUNT)

    async def close(self) -> None:
        """Close the channel or session; requests still in flight on it fail."""
        with suppress(Exception):
            await self.client.close()


def _is_lost(exc: BaseException) -> bool:
    """Whether a failure means the service is unreachable (rather than one batch failing)."""
    if isinstance(exc, (TimeoutError, OSError, DetectorUnavailable)):
        return True
    status = str(exc.status() or "") if callable(getattr(exc, "status", None)) else ""  # InferenceServerException
    text = str(exc).lower()
    if BUSY_MESSAGE in text:
        return False
    if any(s in status for s in LOST_STATUSES):
        return True
    if type(exc).__module__.startswith("aiohttp"):
        return True
    return any(m in text for m in LOST_MESSAGES)


class TritonDetector:
    """Detection on a remote Triton inference service: async, JPEGs on the wire, bounded batches in flight."""

    def __init__(
        self, urls: Sequence[str], model: str = contract.DEFAULT_MODEL_NAME, timeout_s: float = 3.0,
        max_inflight: int = 4, max_batch: int = 0,
    ) -> None:
        if not urls:
            raise ValueError("at least one URL")
        self.endpoints = [parse_url(u) for u in urls]
        self.model = model
        self.timeout_s = timeout_s
        self.max_inflight = max_inflight
        self.info = BackendInfo("triton", self.endpoints[0].safe, "remote", max_batch or DEFAULT_MAX_BATCH)
        self.state = "degraded"
        self.reason: str | None = "not connected yet"
        self.names: list[str] = []
        self.service_max_batch: int | None = None
        self.rtt_ms: deque[float] = deque(maxlen=200)
        self.batch_sizes: deque[int] = deque(maxlen=200)
        self.service_mean_batch: float | None = None
        self.inflight = 0
        self.requests = 0
        self.failures = 0
        self.state_changes = 0
        self._endpoint: Endpoint | None = None
        self._client: _Client | None = None
        self._errors_in_row = 0
        self._stats: tuple[int, int] | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._probe: bytes | None = None

    # -- what /healthz and /metrics show ------------------------------------------------------------

    @property
    def url(self) -> str:
        """The service in use (or the first configured), without credentials."""
        return (self._endpoint or self.endpoints[0]).safe

    def free(self) -> bool:
        """Whether a batch may be sent now: connected, and fewer than max_inflight unanswered."""
        return self.state == "ok" and self.inflight < self.max_inflight

    def figures(self) -> dict[str, Any]:
        """URL, state and reason, round-trip time and batch sizes seen."""
        rtt, sizes = list(self.rtt_ms), list(self.batch_sizes)
        return {
            "url": self.url,
            "urls": [e.safe for e in self.endpoints],
            "model": self.model,
            "state": self.state,
            "reason": self.reason,
            "rtt_ms": round(sum(rtt) / len(rtt), 1) if rtt else None,
            "rtt_ms_p50": round(float(np.median(rtt)), 1) if rtt else None,
            "mean_batch_sent": round(sum(sizes) / len(sizes), 2) if sizes else None,
            "service_mean_batch": self.service_mean_batch,
            "service_max_batch": self.service_max_batch,
            "inflight": self.inflight,
            "max_inflight": self.max_inflight,
            "requests": self.requests,
            "failures": self.failures,
            "state_changes": self.state_changes,
        }

    def draw(self, image: np.ndarray, detections: list[Detection]) -> np.ndarray:
        """Boxes drawn locally, in place (the service returns boxes, not pictures)."""
        return draw_detections(image, detections)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self, spawn: Spawn | None = None) -> None:
        """Try the service once (at most timeout_s), then keep the connection in a supervisor task.

        Never raises for an unreachable service: camserver starts and streams without boxes.

        Args:
            spawn: the app's Supervisor.spawn (the connection task is a long-lived task of detection).
        """
        self._probe = _probe_jpeg()
        await self._connect_any()
        if self.state != "ok":
            log.warning("inference service %s: degraded: %s", self.url, self.reason)
        if spawn is not None:
            self._task = spawn("detect", self._supervise(), "triton-connection")
        else:
            self._task = asyncio.create_task(self._supervise(), name="triton-connection")

    async def stop(self) -> None:
        """Stop the supervisor and close the connection."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- detection ----------------------------------------------------------------------------------

    async def detect_jpegs(self, jpegs: Sequence[bytes]) -> list[list[Detection]]:
        """One request with these JPEGs; the detections of each, in order.

        Raises:
            DetectorUnavailable: degraded, every slot in flight, or the service was lost on this call.
            Exception: the service answered this batch with an error (the next ones may work).
        """
        client = self._client
        if self.state != "ok" or client is None:
            raise DetectorUnavailable(self.reason or "not connected")
        if self.inflight >= self.max_inflight:
            raise DetectorUnavailable(f"{self.max_inflight} batches already in flight")
        self.inflight += 1
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                dets, count = await client.infer(self.model, jpegs)
        except Exception as exc:
            self.failures += 1
            if isinstance(exc, TimeoutError):
                exc = TimeoutError(f"no answer within {self.timeout_s:g} s")
            if _is_lost(exc):
                self._lose(client, exc)
                raise DetectorUnavailable(self.reason or first_line(exc)) from None
            self._errors_in_row += 1
            if self._errors_in_row >= ERRORS_BEFORE_DEGRADED:
                self._lose(client, RuntimeError(f"{self._errors_in_row} batches failed in a row: {first_line(exc)}"))
            raise
        finally:
            self.inflight -= 1
        self._errors_in_row = 0
        self.requests += 1
        self.rtt_ms.append((time.monotonic() - started) * 1000)
        self.batch_sizes.append(len(jpegs))
        results = contract.unpack_detections(dets, count, self.names)
        if len(results) != len(jpegs):
            raise RuntimeError(f"the service returned {len(results)} results for {len(jpegs)} frames")
        return results

    # -- connection ---------------------------------------------------------------------------------

    def _set_state(self, state: str, reason: str | None) -> None:
        self.reason = reason
        if state == self.state:
            return
        self.state = state
        self.state_changes += 1
        if state == "ok":
            log.info("inference service %s: ok (model %r, %d classes, its max batch %s)",
                     self.url, self.model, len(self.names), self.service_max_batch)
        else:
            log.warning("inference service %s: degraded: %s", self.url, reason)

    def _lose(self, client: _Client, exc: BaseException) -> None:
        """The service failed a call on `client`; only the client in use can turn the state degraded."""
        if client is not self._client or self.state != "ok":
            return
        self._set_state("degraded", first_line(exc))
        self._lost.set()

    async def _connect_any(self) -> bool:
        """Try every URL in order; the first whose model answers becomes the one in use."""
        assert self._probe is not None
        reasons = []
        for ep in self.endpoints:
            client = _Client(ep, self.timeout_s)
            try:
                async with asyncio.timeout(self.timeout_s):
                    config = await client.check(self.model)
                    names = contract.class_names_from_config(config)
                    await client.infer(self.model, [self._probe])  # the whole path answers, not just the server
                    stats = await client.statistics(self.model)
            except Exception as exc:
                await client.close()
                text = f"no answer within {self.timeout_s:g} s" if isinstance(exc, TimeoutError) else first_line(exc)
                reasons.append(f"{ep.safe}: {text}" if len(self.endpoints) > 1 else text)
                continue
            old, self._client, self._endpoint = self._client, client, ep
            if old is not None:
                await old.close()
            self.names = names
            self.service_max_batch = int(config.get("max_batch_size", 0)) or None
            self._stats = stats
            self._errors_in_row = 0
            self._lost.clear()
            self._set_state("ok", None)
            return True
        self._set_state("degraded", "; ".join(reasons))
        return False

    async def _poll(self) -> None:
        """Statistics of the model in use: a liveness check, and the service's mean batch since the last poll."""
        client = self._client
        if client is None:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                stats = await client.statistics(self.model)
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                exc = TimeoutError(f"no answer within {self.timeout_s:g} s")
            self._lose(client, exc)
            return
        if self._stats is not None and stats[1] > self._stats[1]:
            self.service_mean_batch = round((stats[0] - self._stats[0]) / (stats[1] - self._stats[1]), 2)
        self._stats = stats

    async def _supervise(self) -> None:
        """While ok: poll every second or wake on a loss. While degraded: reconnect with backoff."""
        delay = BACKOFF_MIN_S
        while True:
            if self.state == "ok":
                delay = BACKOFF_MIN_S
                with suppress(TimeoutError):
                    async with asyncio.timeout(POLL_INTERVAL_S):
                        await self._lost.wait()
                if self.state == "ok":
                    await self._poll()
                continue
            if not await self._connect_any():
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
