"""Task ownership: one helper that cancels and awaits, and the supervisor of the stages' long-lived tasks.

Every long-lived task of a stage (the batching scheduler, event housekeeping, MQTT, webhook
delivery) is started through `Supervisor.spawn`, so they live in one place. A stage task that
ends while the server is not stopping, by an exception or by returning, is never silent: it is
logged with its traceback, the supervisor remembers the first stage that failed (/healthz turns
503 naming it) and sets `failure`, on which `run()` stops the process with a non-zero exit.

An integration (MQTT, webhooks, notifications, mDNS) is spawned with `restart=True` instead: what
it serves is never worth stopping the cameras for. When its task dies the supervisor logs it (with
the traceback, at most once a minute per stage), counts it in /healthz (`stage_restarts`) and starts
it again after a backoff of 1 s doubling to 60 s, back to 1 s once a run lasted a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Coroutine

from .logsafe import printable

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (1.0, 60.0)  # before an integration's task starts again: first, most
STABLE_S = 60.0  # a run this long sets the backoff back to its first step
RESTART_LOG_S = 60.0  # at most one line with a traceback per stage per minute


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel the tasks and wait until each has finished; their errors are logged, not raised.

    A cancellation of the caller itself still propagates.
    """
    pending = [t for t in tasks if t is not None]
    for task in pending:
        task.cancel()
    for task in pending:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:
            log.error("task %s failed while stopping", _name(task), exc_info=True)


def describe(exc: BaseException) -> str:
    """`Type: message` of an exception, of the first one inside an exception group (a TaskGroup's)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return printable(f"{type(exc).__name__}: {exc}")


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)


# How a stage starts a long-lived task: spawn(stage, coroutine, task name) -> the task, or
# spawn(stage, coroutine function, task name, restart=True) for one that is started again when it dies
Spawn = Callable[..., "asyncio.Task[Any]"]


class StageFailed(Exception):
    """A stage's long-lived task died while the server ran; the text names the stage."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        super().__init__(f"the {stage} stage failed (its traceback is in the log); stopping")


class Supervisor:
    """Owns the stages' long-lived tasks and notices when one dies."""

    def __init__(self) -> None:
        self.tasks: dict[asyncio.Task[Any], str] = {}  # task -> stage
        self.failed: str | None = None  # the first stage whose task died
        self.failure = asyncio.Event()
        self.stopping = False
        self.restarts: dict[str, dict[str, Any]] = {}  # stage -> {"restarts", "last_error", "restarting"}
        self._logged: dict[str, tuple[float, int]] = {}  # stage -> (when its last failure was logged, held back)

    def spawn(self, stage: str, coro: Coroutine[Any, Any, Any] | Callable[[], Coroutine[Any, Any, Any]],
              name: str | None = None, restart: bool = False) -> asyncio.Task[Any]:
        """Run `coro` as a long-lived task of `stage`; it must run until cancelled.

        Args:
            restart: `coro` is a coroutine function, called again (after a backoff) each time its
                coroutine dies, instead of stopping the server.
        """
        if restart:
            assert callable(coro), "restart=True takes the coroutine function, not a coroutine"
            coro = self._restarting(stage, coro, name or stage)
        assert not callable(coro)
        task = asyncio.create_task(coro, name=name or stage)
        self.tasks[task] = stage
        task.add_done_callback(self._ended)
        return task

    async def _restarting(self, stage: str, run: Callable[[], Coroutine[Any, Any, Any]], name: str) -> None:
        delay = RESTART_BACKOFF_S[0]
        while True:
            began = time.monotonic()
            error: BaseException | None = None
            try:
                await run()
            except Exception as exc:
                error = exc
            if self.stopping:
                return
            if time.monotonic() - began >= STABLE_S:
                delay = RESTART_BACKOFF_S[0]
            figures = self.restarts.setdefault(stage, {"restarts": 0, "last_error": None, "restarting": False})
            figures["restarts"] += 1
            figures["last_error"] = describe(error) if error else "ended unexpectedly"
            figures["restarting"] = True
            self._log_restart(stage, name, error, delay)
            await asyncio.sleep(delay)
            figures["restarting"] = False
            delay = min(delay * 2, RESTART_BACKOFF_S[1])

    def _log_restart(self, stage: str, name: str, error: BaseException | None, delay: float) -> None:
        now = time.monotonic()
        last, held = self._logged.get(stage, (float("-inf"), 0))
        if now - last < RESTART_LOG_S:
            self._logged[stage] = (last, held + 1)
            return
        self._logged[stage] = (now, 0)
        more = f" ({held} more failures since the last line)" if held else ""
        log.error("stage %s: task %s %s%s; starting it again in %.0f s (%d restarts so far)", stage, name,
                  "died" if error else "ended unexpectedly", more, delay, self.restarts[stage]["restarts"],
                  exc_info=error)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        stage = self.tasks.pop(task, "?")
        if task.cancelled():
            return
        exc = task.exception()
        if self.stopping:
            return  # cancel_and_wait logs what fails while stopping
        if exc is not None:
            log.error("stage %s: task %s died", stage, task.get_name(), exc_info=exc)
        else:
            log.error("stage %s: task %s ended unexpectedly", stage, task.get_name())
        if self.failed is None:
            self.failed = stage
        self.failure.set()

    async def stop(self, *stages: str) -> None:
        """Cancel and await the tasks of `stages` (every stage when none is given)."""
        self.stopping = self.stopping or not stages
        await cancel_and_wait(*(t for t, s in list(self.tasks.items()) if not stages or s in stages))
