"""What /healthz reports: every stage's state in one JSON object (read on the event loop)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from .system import about


def server_health(server: Any) -> dict[str, Any]:
    """The /healthz body of a running `CamServer` (passed in, so this module imports no stage)."""
    detector = server.scheduler.state
    lagging = server.scheduler.lagging(time.monotonic())
    failed = server.supervisor.failed
    if failed is not None:
        status = "failed"
    elif not server.ready:
        status = "starting"
    else:
        status = "ok" if detector == "ok" and not lagging else "degraded"
    health: dict[str, Any] = {"status": status}
    if failed is not None:
        health["failed_stage"] = failed
    if lagging:
        health["lagging_cameras"] = lagging  # camera -> why its detection has not advanced
    health.update({
        "detector": detector,
        "detector_reason": server.scheduler.reason,
        "detector_stalls": server.pool.stalls,
        "model": Path(server.config.detect.model).name,  # not the path: /healthz needs no token
        **about(server.config.detect.model, server.started_at),
        "events": server.events.health(),
        "storage": server.database.budget.health(server.events.write_errors + server.board.write_errors),
        "mqtt": server.mqtt.state,  # never makes the server unhealthy
        "mqtt_error": server.mqtt.problem or None,
        "stage_restarts": server.supervisor.restarts,  # integrations started again after their task died
        "mdns": server.mdns.health(),  # never makes the server unhealthy
        "notify": server.notifier.health(), "notify_held": server.notifier.held,  # redacted URLs; held: by a mute
        "webhooks": {"endpoints": len(server.config.webhooks), "failures": server.webhooks.failures},
        "recording": server.recorder.health(),
        "clock": server.timeline.health(),  # wall-clock steps seen (never makes the server unhealthy)
        "detection": detection_figures(server),
        "tasks": len(asyncio.all_tasks()),
        "viewers": server.viewer_app.viewers_total,
        "viewers_refused": server.viewer_app.viewers_refused,
        "http_connections": server.http_limit.open,
        "http_connections_refused": server.http_limit.refused,
        "http_connections_evicted": server.http_limit.evicted,
        "http_body_timeouts": server.viewer_app.body_timeouts[0],
        "credential_guesses": server.viewer_app.auth.limiter.figures(),
        "camera_auth_failures": server.ingest.auth_failures,
        "cameras": len(server.hub.cameras),
        "cameras_connected": sum(1 for c in server.hub if c.connected),
    })
    return health



def detection_figures(server: Any) -> dict[str, Any]:
    """The scheduler's figures, what the compiled model runs (read back from it) and the precision tuning."""
    figures: dict[str, Any] = server.scheduler.figures()
    executed = getattr(server.pool.drawer, "executed", None) if server.remote is None else None
    if executed:
        figures["executed"] = dict(executed)
    if server.tuner is not None:
        figures["tuning"] = server.tuner.figures()
    return figures
