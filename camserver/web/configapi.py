"""Config routes: the configuration as the page's (an admin's) to read and change.

    GET   /api/config   the file's tables and the effective config (secrets redacted), its version, the schema
    PATCH /api/config   a JSON merge patch (RFC 7396) of config.toml's tables, with If-Match: <version>

Both need the write permission (an admin): writes.py's guard checks it, GET /api/config being one of its
ADMIN_READS. A PATCH is merged into the file's own TOML document
(comments and layout stay), validated by the config models (400 with every one-line error), the
previous file kept as config.toml.1.bak, and written atomically; a file changed since the version
the writer read is refused with 412, so two writers never lose a change. The answer says which keys
the server took at once and which need a restart (config/writeback.py's LIVE_KEYS). GET says which saved
keys still wait for one (restart_needed: the file's now against the file as this process started from it),
so the page's "restart needed" notice holds across reloads and goes once a restart has read the file.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import tomllib
import warnings
from typing import Any, Awaitable, Callable

from aiohttp import web
from pydantic.json_schema import PydanticJsonSchemaWarning

from ..config import Config, ConfigError, HttpConfig, schema
from ..config.userpatch import tokens_shown, users_shown
from ..config.writeback import (ConfigFile, PatchRefused, VersionMismatch, changed_keys, is_live, live_keys_shown,
                                redact)
from ..jsonbody import read_json
from ..logsafe import ThrottledLog

log = logging.getLogger(__name__)

MAX_PATCH = 256 * 1024
PATCH_TYPES = frozenset({"application/merge-patch+json", "application/json"})
_dumps = functools.partial(json.dumps, default=str)  # a TOML date or time is shown as its text


@functools.cache
def config_schema() -> dict[str, Any]:
    """The models' JSON schema, made once (a default pydantic cannot show is left out, as --config-schema does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        return schema()


class ConfigApi:
    """The config routes over the file the server started from.

    Args:
        file: config.toml and the command-line overrides (None: the server was started without a file).
        apply: takes the changed live keys of a new config into the stages (web/liveapply.py's LiveApply).
        storage: the write rate and room the Settings view's "about N days" is made of (shown in GET).
        apply_http: takes new tokens, users and roles into the viewer side's credentials.
    """

    def __init__(self, file: ConfigFile | None, apply: Callable[[Config, list[str]], Awaitable[None]],
                 storage: Callable[[], Awaitable[dict[str, Any]]] | None = None,
                 apply_http: Callable[[HttpConfig, web.Request, web.StreamResponse], None] | None = None) -> None:
        self.file = file
        self.apply = apply
        self.storage = storage
        self.apply_http = apply_http  # new tokens and users (web/session.py's update)
        self.started = self._started(file)  # the file's effective config when this process read it
        self._lock = asyncio.Lock()  # one read-check-write at a time: the version check holds across it
        self._log = ThrottledLog(log, interval_s=60.0)
        self.refused = 0  # patches refused (stale version, invalid value, bad patch)

    @staticmethod
    def _started(file: ConfigFile | None) -> dict[str, Any] | None:
        """The file as the server started from it (read once, at startup: the server has just validated it)."""
        if file is None:
            return None
        try:
            return file.effective(tomllib.loads(file.read()[0].decode("utf-8"))).model_dump(mode="json")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError):
            return None

    def add_routes(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_get("/api/config", self.read)
        app.router.add_patch("/api/config", self.patch)

    def _file(self) -> ConfigFile:
        if self.file is None:
            raise web.HTTPConflict(reason="no config file",
                                   text="the server was started without a config file (--config config.toml)")
        return self.file

    async def read(self, request: web.Request) -> web.Response:
        """The file's tables and the effective config, redacted, with the version to send back in If-Match."""
        file = self._file()
        raw, version = await asyncio.to_thread(file.read)
        body: dict[str, Any] = {"version": version, "path": file.path.name, "live_keys": live_keys_shown()}
        try:
            data = tomllib.loads(raw.decode("utf-8"))
            body["file"] = redact(data)
            effective = file.effective(data)
            dumped = effective.model_dump(mode="json")
            body["effective"] = redact(dumped)
            if self.started is not None:  # saved since the start and not taken live: waits for a restart
                body["restart_needed"] = [k for k in changed_keys(self.started, dumped) if not is_live(k)]
            body["users"], body["tokens"] = users_shown(effective.http), tokens_shown(effective.http)
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            body.update(file=None, effective=None, problems=[f"{file.path.name} is not valid TOML: {exc}"])
        except ConfigError as exc:
            body.update(effective=None, problems=exc.lines)
        if self.storage is not None:
            body["storage"] = await self.storage()
        body["schema"] = config_schema()
        return web.json_response(body, headers={"ETag": f'"{version}"', "Cache-Control": "no-store"}, dumps=_dumps)

    async def patch(self, request: web.Request) -> web.Response:
        """Merge a patch into config.toml; 412 on a stale If-Match, 400 with every error line on a bad value."""
        file = self._file()
        if request.content_type not in PATCH_TYPES:
            raise web.HTTPUnsupportedMediaType(reason="send a JSON merge patch",
                                               text="Content-Type: application/merge-patch+json")
        if_match = request.headers.get("If-Match")
        if if_match is None:
            raise web.HTTPPreconditionRequired(reason="If-Match required",
                                               text="send If-Match: <version> (from GET /api/config)")
        patch = await read_json(request, MAX_PATCH, "the body must be a JSON merge patch")
        async with self._lock:
            try:
                result = await asyncio.to_thread(file.apply, patch, if_match)
            except VersionMismatch as exc:
                self.refused += 1
                return web.json_response({"error": "config.toml changed", "version": str(exc),
                                          "detail": "the file changed since you read it: read it again"},
                                         status=412, headers={"ETag": f'"{exc}"'})
            except PatchRefused as exc:
                self.refused += 1
                raise web.HTTPBadRequest(reason="invalid patch", text=str(exc)) from None
            except ConfigError as exc:
                self.refused += 1
                return web.json_response({"error": "invalid configuration", "problems": exc.lines}, status=400)
            except OSError as exc:
                self._log.warning("write", "config.toml could not be written: %s", exc)
                raise web.HTTPInternalServerError(reason="cannot write config.toml", text=str(exc)) from None
            live = result.live
            if live:
                await self.apply(result.config, live)
            resp = web.json_response({"version": result.version, "changed": result.changed, "applied_live": live,
                                      "restart_needed": result.restart}, headers={"ETag": f'"{result.version}"'})
            if any(k.startswith("http.") for k in live) and self.apply_http is not None:
                self.apply_http(result.config.http, request, resp)  # the writer's own page session kept
        log.info("config.toml changed by %s: %s", request.remote, ", ".join(result.changed) or "nothing")
        return resp
