"""storage.dir's housekeeping: the database file checked and the size budget's rounds run, on the loop.

A tick every TICK_S, sooner when the budget's doorbell rings (a write failed for want of space):
the file is checked every FILE_CHECK_EVERY_S, at once after a stage suspected it (deleted,
replaced, corrupt: recreated, and every kind's files swept again); a budget round runs a tick
after start-up or a kind was added, at once below the free-space floor, while the last round
left work over, and otherwise every ROUND_EVERY_S.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any, Callable, Protocol, TypeVar

from .budget import StorageBudget

ROUND_EVERY_S = 60.0  # a budget round; sooner while a round left work over
FILE_CHECK_EVERY_S = 10.0  # the database file deleted or replaced under us
TICK_S = 1.0
T = TypeVar("T")


class CheckedDatabase(Protocol):
    """What the housekeeping asks of the database (storage/database.py's Database)."""

    @property
    def suspected(self) -> bool:
        """A stage saw an error that may mean the file is gone or corrupt."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the database's thread."""

    def check_file(self) -> bool:
        """Recreate the file if it was deleted, replaced or found corrupt; True if it was (database's thread)."""


async def keep(database: CheckedDatabase, budget: StorageBudget) -> None:
    """The housekeeping loop, until cancelled; a failed check or round is counted and logged, never raised."""
    loop = asyncio.get_running_loop()
    wake = budget.doorbell()
    last_check = last_round = loop.time()
    while True:
        with suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), TICK_S)
        wake.clear()
        now = loop.time()
        if database.suspected or now - last_check >= FILE_CHECK_EVERY_S:
            last_check = now
            try:
                if await database.run(database.check_file):
                    budget.resweep()
            except Exception as exc:
                budget.failed("check", exc)
        try:
            below = await database.run(budget.below_floor)
        except Exception:
            below = False
        if budget.due or below or now - last_round >= ROUND_EVERY_S:
            last_round = now
            await budget.run_round()  # work left over: again at the next tick
