"""Task ownership: one helper that cancels and awaits, and the supervisor of the stages' long-lived tasks.

Every long-lived task of a stage (the batching scheduler, event housekeeping, MQTT, webhook
delivery) is started through `Supervisor.spawn`, so they live in one place. A stage task that
ends while the server is not stopping, by an exception or by returning, is never silent: it is
logged with its traceback, the supervisor remembers the first stage that failed (/healthz turns
503 naming it) and sets `failure`, on which `run()` stops the process with a non-zero exit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Coroutine

log = logging.getLogger(__name__)


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


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)


# How a stage starts a long-lived task: spawn(stage, coroutine, task name) -> the task
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

    def spawn(self, stage: str, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run `coro` as a long-lived task of `stage`; it must run until cancelled."""
        task = asyncio.create_task(coro, name=name or stage)
        self.tasks[task] = stage
        task.add_done_callback(self._ended)
        return task

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
