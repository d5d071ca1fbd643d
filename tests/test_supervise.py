"""The supervisor: an integration whose task dies is restarted with backoff; a core stage still stops the server."""

from __future__ import annotations

import asyncio
import logging
import time

from camserver import supervise
from camserver.supervise import Supervisor


async def test_a_restarted_stage_backs_off_doubling_logs_once_and_never_fails_the_server(monkeypatch, caplog):
    """A task that dies three times: started again after 0.1, 0.2, 0.4 s; one log line with its traceback; the
    failures counted with the last error; `failure` never set; cancelled cleanly at stop."""
    monkeypatch.setattr(supervise, "RESTART_BACKOFF_S", (0.1, 0.4))
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(time.monotonic())
        if len(starts) <= 3:
            raise RuntimeError(f"bug number {len(starts)}")
        await asyncio.sleep(3600)

    supervisor = Supervisor()
    with caplog.at_level(logging.ERROR, logger="camserver.supervise"):
        supervisor.spawn("webhooks", flaky, "webhook-0", restart=True)
        async with asyncio.timeout(10):
            while len(starts) < 4:
                await asyncio.sleep(0.01)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    for gap, backoff in zip(gaps, (0.1, 0.2, 0.4)):  # never sooner than the backoff; late only under load
        assert backoff * 0.95 <= gap < backoff + 2.0, gaps
    assert supervisor.restarts["webhooks"] == {"restarts": 3, "last_error": "RuntimeError: bug number 3",
                                               "restarting": False}
    assert supervisor.failed is None and not supervisor.failure.is_set()
    lines = [r for r in caplog.records if "stage webhooks" in r.getMessage()]
    assert len(lines) == 1 and "bug number 1" in str(lines[0].exc_info[1]), [r.getMessage() for r in lines]
    await supervisor.stop()
    assert not supervisor.tasks


async def test_a_stage_without_restart_still_stops_the_server():
    """A core stage's task that dies sets `failure` and names the stage, as before."""
    supervisor = Supervisor()

    async def broken() -> None:
        raise RuntimeError("scheduler bug")

    supervisor.spawn("detect", broken(), "detection-scheduler")
    await asyncio.wait_for(supervisor.failure.wait(), 5)
    assert supervisor.failed == "detect" and supervisor.restarts == {}
