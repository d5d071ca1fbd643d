"""What the page's System view and zone editor read: the server's figures and the configured shapes."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, Callable

from aiohttp import web

from .. import __version__
from ..config import Config

STORAGE_CACHE_S = 10.0  # the System view polls; counting snapshot files is not free


def model_name(model: str) -> str:
    """The model's file name without its folders (a path says more about the machine than the page needs)."""
    return PurePath(model.rstrip("/")).name or model


def about(model: str, started_at: float, now: float | None = None) -> dict[str, Any]:
    """Version, uptime and what the model is; /healthz shows these."""
    return {
        "version": __version__,
        "uptime_s": round((time.monotonic() if now is None else now) - started_at, 1),  # both monotonic
        "model_name": model_name(model),
        # a .yaml model is the architecture with random weights: its boxes mean nothing
        "model_random_weights": model.lower().endswith((".yaml", ".yml")),
    }


def shape_json(entry: Any) -> dict[str, Any]:
    """A zone or mask from config (a table or a dataclass) as JSON: camera, name, points, labels."""
    get = entry.get if isinstance(entry, Mapping) else (lambda key, default=None: getattr(entry, key, default))
    out: dict[str, Any] = {"camera": get("camera"), "points": [[float(x), float(y)] for x, y in get("points", ())]}
    if get("name") is not None:
        out["name"] = get("name")
    labels = get("labels")
    if labels:
        out["labels"] = sorted(labels)
    return out


def configured_shapes(config: Config) -> dict[str, list[dict[str, Any]]]:
    """[[events.zones]], and [[motion.masks]] and [[events.masks]] where this config has them."""
    shapes = {"zones": [shape_json(z) for z in config.events.zones]}
    motion = getattr(config, "motion", None)
    if motion is not None and hasattr(motion, "masks"):
        shapes["motion_masks"] = [shape_json(m) for m in motion.masks]
    if hasattr(config.events, "masks"):
        shapes["object_masks"] = [shape_json(m) for m in config.events.masks]
    return shapes


def system_facts(config: Config) -> dict[str, Any]:
    """What /api/system says of the configuration (no secrets): storage budget, events, MQTT broker, ports."""
    storage = config.storage
    return {
        "storage": {"max_bytes": int(storage.max_mb * 1024 * 1024), "retain_days": storage.retain_days},
        "events_enabled": config.events.enabled,
        "mqtt_broker": f"{config.mqtt.host}:{config.mqtt.port}" if config.mqtt.host else None,
        "ingest_port": config.ingest.port,
    }


class SystemApi:
    """Routes /api/system (health plus storage, version, uptime) and /api/zones (configured shapes).

    Args:
        health: what /healthz says.
        facts: `system_facts(config)`.
        shapes: `configured_shapes(config)`.
        storage_used: bytes used under storage.dir (synchronous: it walks a folder), or None.
    """

    def __init__(
        self,
        health: Callable[[], dict[str, Any]],
        facts: dict[str, Any],
        shapes: dict[str, list[dict[str, Any]]],
        storage_used: Callable[[], int | None] | None,
    ) -> None:
        self.health = health
        self.facts = facts
        self.shapes = shapes
        self.storage_used = storage_used  # synchronous (it walks a folder): run in an executor
        self._used: tuple[float, int | None] = (float("-inf"), None)

    def reshape(self, config: Config) -> None:
        """The shapes of a config changed from the page (/api/config), for /api/zones."""
        self.shapes = configured_shapes(config)

    def add_routes(self, app: web.Application) -> None:
        """Register the routes."""
        app.router.add_get("/api/system", self.system)
        app.router.add_get("/api/zones", self.zones)

    async def _storage_bytes(self) -> int | None:
        if self.storage_used is None:
            return None
        at, used = self._used
        if time.monotonic() - at > STORAGE_CACHE_S:
            try:
                used = await asyncio.get_running_loop().run_in_executor(None, self.storage_used)
            except OSError:
                used = None
            self._used = (time.monotonic(), used)
        return used

    async def system(self, request: web.Request) -> web.Response:
        """Everything /healthz says, and storage use against storage.max_mb and the MQTT broker."""
        return web.json_response({
            **self.health(),
            **self.facts,
            "storage": {**self.facts["storage"], "used_bytes": await self._storage_bytes()},
            # the API routes this server has ("{}" for a parameter): the page shows what they
            # serve only where they exist, without probing for 404s
            "api": sorted({re.sub(r"\{[^}]*\}", "{}", r.canonical) for r in request.app.router.resources()}),
        })

    async def zones(self, request: web.Request) -> web.Response:
        """The configured zones and masks, all cameras or ?camera=<id>."""
        camera = request.query.get("camera")
        shapes = self.shapes
        if camera:
            shapes = {kind: [s for s in items if s["camera"] == camera] for kind, items in shapes.items()}
        return web.json_response(shapes)
