"""POST /api/restart: stop the server cleanly and start it again with the same command line.

An admin's write (writes.py's guard: the write permission, a same-origin request). Only a server that
`python -m camserver` (or the `camserver` command) started can start itself again: run.py waits for
the request beside the stop signals, every stop step runs, then cli.py re-executes the process
(os.execv of sys.executable with the same arguments), so the new config.toml is read as at any start.
Anywhere else (a test's in-process server, the demo) the answer is 409 "restart by hand".
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

log = logging.getLogger(__name__)


class RestartRequest:
    """Whether this process can start itself again, and the request to do so (set once)."""

    def __init__(self) -> None:
        self.available = False  # set by run() when cli.py will re-execute the process after it returns
        self.requested = asyncio.Event()

    def add_routes(self, app: web.Application) -> None:
        """Register the route."""
        app.router.add_post("/api/restart", self.restart)

    async def restart(self, request: web.Request) -> web.Response:
        """202 and the restart begins once the answer is sent; 409 when this process cannot restart itself."""
        if not self.available:
            raise web.HTTPConflict(reason="restart by hand",
                                   text="this server was not started by `python -m camserver`: restart it by hand")
        log.info("restart asked by %s", request.remote)
        asyncio.get_running_loop().call_later(0.2, self.requested.set)  # the answer leaves before the stop
        return web.json_response({"restarting": True}, status=202)
