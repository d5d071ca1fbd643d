"""tritonclient's asyncio gRPC and HTTP clients behind the few calls camserver's triton backend makes.

What comes back is bounded before it is read: gRPC's max_receive_message_length, and for HTTP a read
that stops past the same size (contract.max_answer_bytes of the largest request).
"""

from __future__ import annotations

import base64
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

import numpy as np

from . import triton_contract as contract
from ..base import DetectorUnavailable

# gRPC statuses and message parts that mean the service (or the model) is not there, not that a batch failed
LOST_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "NOT_FOUND")
LOST_MESSAGES = ("unknown model", "not ready", "failed to connect", "connection refused", "stub process")
BUSY_MESSAGE = "exceeds maximum queue size"
TOO_LARGE = ("Received message larger than max", "bytes the contract allows")  # an answer past max_answer


@dataclass(frozen=True)
class Endpoint:
    """One configured service URL, split for the client; `safe` is the URL without credentials."""

    url: str = field(repr=False)  # may hold credentials: never logged
    grpc: bool
    tls: bool
    hostport: str
    safe: str
    headers: dict[str, str] = field(repr=False)


def parse_url(url: str, token: str = "") -> Endpoint:
    """grpc://, grpcs://, http:// or https:// [user:password@] host:port; credentials become basic auth.

    Args:
        token: the service's access token (camserver-infer --token-file), sent on every call in the
            header Triton's restricted API checks (`triton-access-token`; gRPC adds its protocol prefix).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("grpc", "grpcs", "http", "https") or not parts.hostname:
        raise ValueError(f"not a grpc:// or http:// URL: {url!r}")
    default_port = 8001 if scheme.startswith("grpc") else 8000
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    hostport = f"{host}:{parts.port or default_port}"
    headers = {}
    if parts.username is not None:
        basic = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
        headers["authorization"] = f"Basic {basic}"
    if token:
        headers[contract.token_header(scheme.startswith("grpc"))] = token
    return Endpoint(url, scheme.startswith("grpc"), scheme.endswith("s"), hostport, f"{scheme}://{hostport}", headers)


class TritonClient:
    """tritonclient's asyncio gRPC or HTTP client behind the few calls this backend makes.

    Args:
        max_answer: bytes of one answer at most (contract.max_answer_bytes of the largest request).
    """

    def __init__(self, ep: Endpoint, timeout_s: float, max_answer: int) -> None:
        self.ep = ep
        self.timeout_s = timeout_s
        self.max_answer = max_answer
        self.outputs: tuple[str, ...] = (contract.DETECTIONS, contract.COUNT, contract.SIZE)
        if ep.grpc:
            import tritonclient.grpc as module
            import tritonclient.grpc.aio as aio

            keepalive = module.KeepAliveOptions()
            channel = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", max_answer),
                       ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
                       ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
                       ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
                       ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data)]
            self.client: Any = aio.InferenceServerClient(ep.hostport, ssl=ep.tls, channel_args=channel)
            self.as_json: dict[str, Any] = {"as_json": True}
        else:
            import tritonclient.http as module

            self.client = bounded_http_client(ep.hostport, ep.tls, timeout_s, max_answer)
            self.as_json = {}
        self.module = module

    async def check(self, model: str) -> dict[str, Any]:
        """Server ready, model ready: the model's configuration. Raises DetectorUnavailable."""
        if not await self.client.is_server_ready(headers=self.ep.headers):
            raise DetectorUnavailable("the server is not ready")
        if not await self.client.is_model_ready(model, headers=self.ep.headers):
            raise DetectorUnavailable(f"model {model!r} is not ready")
        config: dict[str, Any] = await self.client.get_model_config(model, headers=self.ep.headers, **self.as_json)
        config = config.get("config", config)  # gRPC wraps it
        if contract.ERROR in {o.get("name") for o in config.get("output", []) if isinstance(o, dict)}:
            self.outputs = (contract.DETECTIONS, contract.COUNT, contract.SIZE, contract.ERROR)
        return config

    async def statistics(self, model: str) -> tuple[int, int]:
        """The model's (frames inferred, executions) since the service started."""
        stats = await self.client.get_inference_statistics(model, headers=self.ep.headers, **self.as_json)
        model_stats = (stats.get("model_stats") or [{}])[0]
        return int(model_stats.get("inference_count", 0)), int(model_stats.get("execution_count", 0))

    async def infer(self, model: str, jpegs: Sequence[bytes]) -> dict[str, np.ndarray | None]:
        """One request: the JPEGs in, the outputs by name (None for one the answer lacks)."""
        tensor = self.module.InferInput(contract.INPUT, [len(jpegs), 1], "BYTES")
        tensor.set_data_from_numpy(contract.pack_jpegs(jpegs))
        outputs = [self.module.InferRequestedOutput(name) for name in self.outputs]
        extra = {"client_timeout": self.timeout_s} if self.ep.grpc else {}
        try:
            result = await self.client.infer(model, [tensor], outputs=outputs, headers=self.ep.headers, **extra)
        except Exception as exc:
            if any(text in str(exc) for text in TOO_LARGE):  # gRPC's or our HTTP read's bound
                raise contract.BadAnswer(f"an answer over the {self.max_answer} bytes the contract allows") from None
            raise
        return {name: result.as_numpy(name) for name in self.outputs}

    async def close(self) -> None:
        """Close the channel or session; requests still in flight on it fail."""
        with suppress(Exception):
            await self.client.close()


def bounded_http_client(hostport: str, tls: bool, timeout_s: float, max_answer: int) -> Any:
    """tritonclient's asyncio HTTP client, reading at most `max_answer` bytes of any answer."""
    import tritonclient.http.aio as aio
    from tritonclient.utils import InferenceServerException

    def bounded(response: Any) -> Any:
        """The response, refused when it declares more than max_answer bytes, its read() stopping past it."""
        if (response.content_length or 0) > max_answer:
            response.close()
            raise InferenceServerException(f"an answer of {response.content_length} bytes, over the "
                                           f"{max_answer} bytes the contract allows")

        async def read() -> bytes:
            body = bytearray()
            while chunk := await response.content.read(65536):
                body += chunk
                if len(body) > max_answer:
                    response.close()
                    raise InferenceServerException(f"an answer over the {max_answer} bytes the contract allows")
            return bytes(body)

        response.read = read
        return response

    class BoundedClient(aio.InferenceServerClient):  # type: ignore[misc]
        async def _get(self, *args: Any, **kwargs: Any) -> Any:
            return bounded(await super()._get(*args, **kwargs))

        async def _post(self, *args: Any, **kwargs: Any) -> Any:
            return bounded(await super()._post(*args, **kwargs))

    return BoundedClient(hostport, ssl=tls, conn_timeout=timeout_s)


def is_lost(exc: BaseException) -> bool:
    """Whether a failure means the service is unreachable (rather than one batch failing)."""
    if isinstance(exc, (TimeoutError, OSError, DetectorUnavailable)):
        return True
    status_of = getattr(exc, "status", None)  # InferenceServerException.status()
    status = str(status_of() or "") if callable(status_of) else ""
    text = str(exc).lower()
    if BUSY_MESSAGE in text:
        return False
    if any(s in status for s in LOST_STATUSES):
        return True
    if type(exc).__module__.startswith("aiohttp"):
        return True
    return any(m in text for m in LOST_MESSAGES)
