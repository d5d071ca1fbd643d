"""Webhooks: each event change a [[webhooks]] entry asks for is POSTed to its URL as JSON.

Each webhook has its own bounded queue and its own task, so a dead or slow endpoint never slows
frames, events or another webhook: when its queue is full, the oldest message is dropped and
counted. A delivery that fails (a network error, a timeout or a 5xx; a 4xx is the receiver's
final answer) is retried 3 times with backoff, then counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from ..config import WebhookConfig
from ..events.rules import Change
from ..events.shape import message as public_message
from ..logsafe import ThrottledLog, printable, url_for_log
from ..supervise import Spawn, cancel_and_wait
from .outbox import Outbox, drained

log = logging.getLogger(__name__)

QUEUE = 100  # messages waiting per webhook
TIMEOUT_S = 5.0
RETRY_DELAYS_S = (1.0, 2.0, 4.0)
MAX_REDIRECTS = 3


class Webhook:
    """One endpoint: its filter, its queue, its delivery task."""

    def __init__(self, config: WebhookConfig, retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S) -> None:
        self.config = config
        self.retry_delays_s = retry_delays_s
        self.outbox: Outbox[dict[str, Any]] = Outbox(QUEUE)
        self.delivered = self.failures = 0

    def wants(self, change: Change) -> bool:
        """Whether this webhook asked for this change."""
        c, after = self.config, change.after
        return (change.type in c.types and (not c.cameras or after["camera"] in c.cameras)
                and (not c.labels or after["label"] in c.labels))


class WebhookSender:
    """Delivers event changes to every configured webhook."""

    def __init__(self, configs: tuple[WebhookConfig, ...], retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S) -> None:
        self.hooks = [Webhook(c, retry_delays_s) for c in configs]
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._failures = ThrottledLog(log, interval_s=60.0)

    @property
    def failures(self) -> int:
        """Deliveries given up after the retries."""
        return sum(h.failures for h in self.hooks)

    def on_change(self, change: Change) -> None:
        """An event change (called on the loop); those the cooldown holds back are not sent."""
        if not change.after.get("announced", True):
            return
        message = public_message(change)  # the same shape as the live feed and /api/events (events/shape.py)
        for hook in self.hooks:
            if hook.wants(change):
                hook.outbox.put(message)

    async def start(self, spawn: Spawn) -> None:
        """One delivery task per webhook."""
        if not self.hooks:
            return
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        self._tasks = [spawn("webhooks", partial(h.outbox.serve, partial(self._deliver, h)), f"webhook-{i}", restart=True) for i, h in enumerate(self.hooks)]

    async def stop(self, grace_s: float = 2.0) -> None:
        """Deliver what is queued (the events ended at shutdown) for up to `grace_s`, then stop."""
        if self._tasks:
            await drained((h.outbox for h in self.hooks), grace_s)
        await cancel_and_wait(*self._tasks)
        if self._session is not None:
            await self._session.close()

    async def _deliver(self, hook: Webhook, message: dict[str, Any]) -> None:
        """POST one message, retrying network errors and 5xx; any error is counted and logged, never raised."""
        shown = url_for_log(hook.config.url)
        problem = ""
        for delay in (*hook.retry_delays_s, None):
            try:
                status = await self._post(hook, message)
                if status < 500:
                    if status >= 400:
                        self._failures.warning(shown, "webhook %s refused an event with HTTP %d; not retried", shown,
                                               status)
                    elif status >= 300:
                        self._failures.warning(shown, "webhook %s answered a redirect (HTTP %d); not followed "
                                               "(follow_redirects = true follows one to the same origin)", shown, status)
                    else:
                        hook.delivered += 1
                        return
                    break
                problem = f"HTTP {status}"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network errors, timeouts, and anything aiohttp raises on a bad request
                problem = printable(str(exc) or type(exc).__name__)
            if delay is not None:
                await asyncio.sleep(delay)
        else:
            self._failures.warning(shown, "webhook %s failed after %d retries (%s); %d failed so far",
                                   shown, len(hook.retry_delays_s), problem, hook.failures + 1)
        hook.failures += 1

    async def _post(self, hook: Webhook, message: dict[str, Any]) -> int:
        """The HTTP status of the POST, after following at most MAX_REDIRECTS to the same origin if allowed."""
        assert self._session is not None
        url = hook.config.url
        for _ in range(MAX_REDIRECTS + 1):
            async with self._session.post(url, json=message, headers=dict(hook.config.headers),
                                          allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if not (300 <= resp.status < 400 and location and hook.config.follow_redirects):
                    return resp.status
                target = urljoin(url, location)
                if _origin(target) != _origin(hook.config.url):
                    return resp.status  # never re-post the event and its headers to another host
                url = target
        return resp.status


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port
