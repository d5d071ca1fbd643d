"""The triton backend: detection on a shared inference service (`python -m camserver.infer`).

camserver sends each batch's camera JPEGs as they arrived (no decode here, no detector thread)
over tritonclient's asyncio gRPC client (or HTTP), and gets boxes back (detect/backends/triton_contract.py).

The service may be down at start-up or vanish later. Then the detector is `degraded` with the
reason, logs one line per change of state, refuses batches at once (the scheduler publishes those
frames without boxes; nothing queues here), and a supervisor task reconnects with backoff, trying
the configured URLs in order. While connected, it polls the service's statistics every second:
that notices a lost service with no frames flowing, and gives the mean batch the service forms
from the requests of every camserver instance.

No answer is trusted: a message larger than the contract allows is refused by the transport
(gRPC's max_receive_message_length, a bounded read over HTTP), and one that breaks the contract
(a missing output, wrong shapes or counts, NaN, infinity, a box outside its frame, an unknown class)
is a failure of the service like an error answer: ERRORS_BEFORE_DEGRADED in a row turn it degraded,
and it comes back once its probe answers well. A JPEG the service refuses (its own size limits) is
counted and logged, and its frame goes without boxes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from contextlib import suppress
from typing import Any, Sequence

import numpy as np

from . import triton_contract as contract
from ...logsafe import ThrottledLog, printable
from ...supervise import Spawn, cancel_and_wait
from ..base import BackendInfo, Detection, DetectorUnavailable, first_line
from ..frames import draw_detections
from .triton_client import Endpoint, TritonClient, is_lost, parse_url

__all__ = ["TritonDetector", "Endpoint", "parse_url"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8  # frames per request; the service's batcher merges requests of every instance
BACKOFF_MIN_S = 0.25
BACKOFF_MAX_S = 2.0  # short: detection should resume within seconds of the service's return
POLL_INTERVAL_S = 1.0
RESTRICTED_TEXT = "is restricted, expecting header"  # Triton's refusal of a call without its access token
ERRORS_BEFORE_DEGRADED = 3  # batches in a row the service answered with an error or a bad answer
def _probe_jpeg() -> bytes:
    import cv2

    return cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes()


class TritonDetector:
    """Detection on a remote Triton inference service: async, JPEGs on the wire, bounded batches in flight."""

    def __init__(
        self, urls: Sequence[str], model: str = contract.DEFAULT_MODEL_NAME, timeout_s: float = 3.0,
        max_inflight: int = 4, max_batch: int = 0, token: str = "",
    ) -> None:
        if not urls:
            raise ValueError("at least one URL")
        self.endpoints = [parse_url(u, token) for u in urls]
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
        self.bad_answers = 0  # answers that broke the contract (counted in failures too)
        self.refused = 0  # JPEGs the service refused (its size limits): those frames went without boxes
        self.state_changes = 0
        self._refusals = ThrottledLog(log)
        self._endpoint: Endpoint | None = None
        self._client: TritonClient | None = None
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
            "bad_answers": self.bad_answers,
            "frames_refused": self.refused,
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
            log.warning("inference service %s: degraded: %s", self.url, printable(self.reason))
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
                answer = await client.infer(self.model, jpegs)
            results, errors = self._unpack(answer, len(jpegs))
        except Exception as exc:
            self.failures += 1
            if isinstance(exc, TimeoutError):
                exc = TimeoutError(f"no answer within {self.timeout_s:g} s")
            if isinstance(exc, contract.BadAnswer):
                self.bad_answers += 1
                exc = contract.BadAnswer(f"bad answer: {exc}")
            elif is_lost(exc):
                self._lose(client, exc)
                raise DetectorUnavailable(self.reason or first_line(exc)) from None
            self._errors_in_row += 1
            if self._errors_in_row >= ERRORS_BEFORE_DEGRADED:
                self._lose(client, RuntimeError(f"{self._errors_in_row} batches failed in a row: {first_line(exc)}"))
            raise exc from None
        finally:
            self.inflight -= 1
        self._errors_in_row = 0
        self.requests += 1
        self.rtt_ms.append((time.monotonic() - started) * 1000)
        self.batch_sizes.append(len(jpegs))
        for error in errors:
            if error:
                self.refused += 1
                self._refusals.warning("refused", "inference service %s refused a frame: %s", self.url, printable(error))
        return results

    def _unpack(self, answer: dict[str, np.ndarray | None], frames: int) -> tuple[list[list[Detection]], list[str]]:
        """The detections and refusals of an answer, checked. Raises contract.BadAnswer."""
        results = contract.unpack_detections(answer.get(contract.DETECTIONS), answer.get(contract.COUNT), self.names,
                                             frames, answer.get(contract.SIZE))
        return results, contract.unpack_errors(answer.get(contract.ERROR), frames)

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
            log.warning("inference service %s: degraded: %s", self.url, printable(reason))  # its text: escaped

    def _lose(self, client: TritonClient, exc: BaseException) -> None:
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
            client = TritonClient(ep, self.timeout_s, contract.max_answer_bytes(self.info.max_batch))
            try:
                async with asyncio.timeout(self.timeout_s):
                    config = await client.check(self.model)
                    names = contract.class_names_from_config(config)
                    probe = await client.infer(self.model, [self._probe])  # the whole path answers, not just the server
                    contract.unpack_detections(probe.get(contract.DETECTIONS), probe.get(contract.COUNT), names, 1,
                                               probe.get(contract.SIZE))  # ... and keeps the contract
                    stats = await client.statistics(self.model)
            except Exception as exc:
                await client.close()
                text = f"no answer within {self.timeout_s:g} s" if isinstance(exc, TimeoutError) else first_line(exc)
                text = f"bad answer: {text}" if isinstance(exc, contract.BadAnswer) else text
                if RESTRICTED_TEXT in text:  # Triton's own answer names only the header
                    text = f"the service wants its access token (detect.triton_token missing or wrong): {text}"
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
