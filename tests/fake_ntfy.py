"""A fake ntfy (and Gotify) server: an aiohttp app that records every message it receives.

Apprise's ntfy:// plugin sends a message without attachment as JSON to the server's root
({"topic", "title", "message"}), and one with an attachment as a POST to /<topic> whose body is
the raw file, with title, message and filename as query parameters. gotify:// POSTs JSON to
/message (Gotify takes no attachments).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import AsyncIterator

from aiohttp import web


@dataclasses.dataclass
class Received:
    """One message as the server saw it."""

    topic: str
    title: str
    message: str
    attachment: bytes | None  # the raw body of an attachment upload
    filename: str | None
    content_type: str
    authorization: str | None
    at: float  # time.monotonic() on arrival


class FakeNtfy:
    """Records messages per topic; topics in `hang` wait `hang_s` before answering, `fail` lists
    HTTP statuses to answer (one per request) before answering 200."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.requests: list[tuple[str, float]] = []  # (topic, arrival) of every request, answered or not
        self.hang: set[str] = set()
        self.hang_s = 30.0
        self.fail: dict[str, list[int]] = {}
        self.arrived = asyncio.Event()
        self.url = ""

    def on(self, topic: str) -> list[Received]:
        """Messages received for a topic."""
        return [r for r in self.received if r.topic == topic]

    async def _record(self, request: web.Request, topic: str, received: Received | None) -> web.Response:
        self.requests.append((topic, time.monotonic()))
        if topic in self.hang:
            await asyncio.sleep(self.hang_s)
        statuses = self.fail.get(topic)
        if statuses:
            status = statuses.pop(0)
            return web.json_response({"code": status, "error": "fake failure"}, status=status)
        if received is not None:
            self.received.append(received)
            self.arrived.set()
        return web.json_response({"id": str(len(self.received)), "event": "message", "topic": topic})

    async def json_message(self, request: web.Request) -> web.Response:
        data = await request.json()
        auth = request.headers.get("Authorization")
        return await self._record(request, data["topic"], Received(
            data["topic"], data.get("title", ""), data.get("message", ""), None, None,
            request.headers.get("Content-Type", ""), auth, time.monotonic()))

    async def upload(self, request: web.Request) -> web.Response:
        topic, q = request.match_info["topic"], request.query
        body = await request.read()
        return await self._record(request, topic, Received(
            topic, q.get("title", ""), q.get("message", ""), body, q.get("filename"),
            request.headers.get("Content-Type", ""), request.headers.get("Authorization"), time.monotonic()))

    async def gotify(self, request: web.Request) -> web.Response:
        data = await request.json()
        topic = "gotify:" + request.headers.get("X-Gotify-Key", request.query.get("token", ""))
        return await self._record(request, topic, Received(
            topic, data.get("title", ""), data.get("message", ""), None, None,
            request.headers.get("Content-Type", ""), None, time.monotonic()))

    async def wait(self, predicate, timeout: float = 10.0, what: str = "messages") -> None:
        """Wait until predicate() holds, failing after `timeout`."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {[(r.topic, r.title) for r in self.received]}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self.arrived.wait()


@contextlib.asynccontextmanager
async def fake_ntfy() -> AsyncIterator[FakeNtfy]:
    """A FakeNtfy on 127.0.0.1, a free port; `url` is http://127.0.0.1:PORT. No access log (it would
    print topics, which the tests treat as secrets of the server under test)."""
    fake = FakeNtfy()
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app.router.add_post("/", fake.json_message)
    app.router.add_post("/message", fake.gotify)
    app.router.add_post("/{topic}", fake.upload)
    app.router.add_put("/{topic}", fake.upload)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield fake
    finally:
        await runner.cleanup()


def decoded(r: Received) -> dict:
    """A message as a dict, for assertion messages."""
    return {k: v for k, v in dataclasses.asdict(r).items() if k != "attachment"} | {
        "attachment": len(r.attachment) if r.attachment is not None else None}

