"""A webhook receiver for tests and benchmarks: an aiohttp app on a free port that takes POST /hook."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web


@contextlib.asynccontextmanager
async def receiver(handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                   shutdown_timeout: float = 0.5) -> AsyncIterator[str]:
    """Serve `handler` at POST /hook on 127.0.0.1 and a free port; yields the URL."""
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()
