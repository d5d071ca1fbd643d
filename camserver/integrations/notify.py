"""Phone notifications through Apprise: "Person at door", with the picture, and the clip after.

Each [[notify]] table is a target group: its filter (cameras, labels, zones), its cooldown per
camera and label, and its URLs. An event notifies a group once: on its `new` change, or, when
the group lists zones, on the first change (new or a later update) where the object has entered
one of them: people are usually seen before they reach the porch, and the notification that
matters is the one when they get there. Events the events cooldown holds back (`announced` is
false) never notify.

Never in the way: on_change runs on the loop and only queues. Every URL (a target) has its own
bounded drop-oldest outbox and delivery task, and each send runs on its own daemon thread.
Apprise's async API was not used on purpose: it runs every blocking send() on one process-wide
pool (min(32, cores + 4) threads) and its timeout only stops waiting, so a few hanging targets
would hold that pool's threads and delay the others. Here a hanging target holds one thread of
its own (until its socket timeout), and its message waits only its own queue.

A send gets TIMEOUT_S (the clip, a bigger upload, CLIP_TIMEOUT_S) and up to 3 retries. The
picture is rendered once per message, on the first target's thread, from the event's best
frame: with its box (attach = "snapshot") or cropped around the object ("crop").
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Callable

from ..config import NotifyConfig
from ..events.rules import Change
from ..events.shape import message as public_message
from ..events.snapshots import render_snapshot
from ..logsafe import ThrottledLog
from ..supervise import Spawn, cancel_and_wait
from ..config.apprise_urls import apprise_warnings, instantiate, redact, scrub
from .outbox import Outbox, drained

log = logging.getLogger(__name__)

QUEUE = 20  # messages waiting per target; a notification minutes late is worth little
TIMEOUT_S = 10.0
CLIP_TIMEOUT_S = 30.0  # 8 MB over a 5 Mbit/s home uplink takes ~13 s
RETRY_DELAYS_S = (1.0, 2.0, 4.0)
MAX_CLIP_BYTES = 8 * 1024 * 1024  # what most services take (Telegram bots: 50 MB, ntfy.sh: 15 MB)
REMEMBERED = 4096  # event ids per group whose notification is decided (bounded)

Snapshot = Callable[[str], bytes | None]  # event id -> its best frame (the camera's JPEG)
ClipPath = Callable[[str], Path | None]  # event id -> its clip, once recorded


def local_time(when: float) -> str:
    """A time as people read it, in the server's time zone: 14:03:22 CEST, Mon 06 May 2024."""
    return datetime.fromtimestamp(when).astimezone().strftime("%H:%M:%S %Z, %a %d %b %Y")


@dataclass(eq=False)
class Notice:
    """One message for every target of a group; its picture is rendered once, off the loop."""

    title: str
    body: str
    record: dict[str, Any]
    kind: str  # "snapshot", "crop", "none", "clip" or "test"
    frame: bytes | None = None  # the JPEG to start from (None: ask the snapshot callable)
    _picture: bytes | None = field(default=None, repr=False)
    _rendered: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def picture(self, snapshot: Snapshot | None) -> bytes | None:
        """The JPEG to attach (rendered on first call, on a sender thread), or None."""
        if self.kind in ("none", "clip"):
            return None
        with self._lock:
            if not self._rendered:
                self._rendered = True
                self._picture = self._render(snapshot)
            return self._picture

    def _render(self, snapshot: Snapshot | None) -> bytes | None:
        if self.kind == "test":
            return self.frame
        jpeg = self.frame
        if jpeg is None and snapshot is not None and self.record.get("has_snapshot"):
            jpeg = snapshot(self.record["id"])
        if jpeg is None:
            return None
        return render_snapshot(jpeg, self.record, True, self.kind == "crop", None)


class Target:
    """One URL: its Apprise plugin, queue, counters. `url` is redacted; the real one stays inside."""

    def __init__(self, label: str, url: str) -> None:
        self.label = label  # notify[0].urls[1]
        self._url = url
        self.url = redact(url)
        self.plugin = instantiate(url)
        if self.plugin is None:  # config validation makes this unreachable for a loaded config
            raise ValueError(f"{label}: Apprise cannot use {self.url}")
        self.attachments = bool(self.plugin.attachment_support)
        self.outbox: Outbox[Notice] = Outbox(QUEUE)
        self.sent = self.failed = 0
        self.busy: asyncio.Future[Outcome] | None = None  # an attempt that outlived its timeout
        self.busy_notice: Notice | None = None

    def __repr__(self) -> str:
        return f"Target({self.label}, {self.url})"

    def fresh_plugin(self) -> Any:
        """Another plugin instance (a test send never shares state with deliveries in flight)."""
        return instantiate(self._url)

    def health(self) -> dict[str, Any]:
        """Counters for /healthz, with the redacted URL."""
        return {"target": self.label, "url": self.url, "sent": self.sent, "failed": self.failed,
                "dropped": self.outbox.dropped, "queued": len(self.outbox)}


def _target(label: str, url: str, known: dict[str, Target]) -> Target:
    """A target for `url`: the running one when there is one (its queue and counters go on), else a new one."""
    target = known.pop(url, None)
    if target is None:
        return Target(label, url)
    target.label = label
    return target


class Group:
    """One [[notify]] table: filter, cooldown, targets, and which events it already decided."""

    def __init__(self, index: int, config: NotifyConfig, known: dict[str, Target] | None = None) -> None:
        self.config = config
        self.targets = [_target(f"notify[{index}].urls[{n}]", url, known or {}) for n, url in enumerate(config.urls)]
        self.last_sent: dict[tuple[str, str], float] = {}  # (camera, label) -> clock time
        self.decided: OrderedDict[str, bool] = OrderedDict()  # event id -> notified

    def matches(self, after: dict[str, Any]) -> bool:
        """Camera, label and (when set) zones."""
        c = self.config
        return ((not c.cameras or after["camera"] in c.cameras) and (not c.labels or after["label"] in c.labels)
                and (not c.zones or any(z in c.zones for z in after.get("entered_zones", ()))))

    def decide(self, event_id: str, notified: bool) -> None:
        """Remember that this event's notification was sent (True) or skipped (False)."""
        self.decided[event_id] = notified
        if len(self.decided) > REMEMBERED:
            self.decided.popitem(last=False)


Outcome = tuple[str, str]  # "sent", "skipped" (no clip to send) or "failed"; and why not


def _run_in_thread(fn: Callable[[], Outcome], name: str) -> asyncio.Future[Outcome]:
    """Run `fn` on a new daemon thread (a hung send never holds up the process at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Outcome] = loop.create_future()

    def settle(result: Outcome) -> None:
        if not future.done():
            future.set_result(result)

    def run() -> None:
        try:
            result = fn()
        except Exception as exc:  # fn catches its own; this is the last guard for the thread
            result = ("failed", scrub(f"{type(exc).__name__}: {exc}"))
        with suppress(RuntimeError):  # the loop closed while a hung send went on
            loop.call_soon_threadsafe(settle, result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class Notifier:
    """Sends notifications for event changes to every [[notify]] group that wants them."""

    def __init__(
        self,
        configs: tuple[NotifyConfig, ...],
        public_url: str = "",
        snapshot: Snapshot | None = None,
        clip_path: ClipPath | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
        muted: Callable[[str], bool] = lambda camera: False,
        name: Callable[[str], str | None] = lambda camera: None,
    ) -> None:
        self.name = name  # camera id -> its [cameras.<id>] name (the title says it), None for none
        self.groups = [Group(i, c) for i, c in enumerate(configs)]
        self.public_url = public_url.rstrip("/")
        self.snapshot = snapshot
        self.clip_path = clip_path
        self.clock = clock
        self.retry_delays_s = retry_delays_s
        self.muted = muted  # camera id -> its notifications are held now (integrations/mute.py)
        self.held = 0  # notifications a mute held back
        self._tasks: dict[Target, asyncio.Task[None]] = {}
        self._spawn: Spawn | None = None
        self._failures = ThrottledLog(log, interval_s=60.0)
        if clip_path is None and any(c.clip for c in configs):
            log.warning("notify: clip = true, but no clips are recorded; only the pictures are sent")

    @property
    def targets(self) -> list[Target]:
        """Every target of every group."""
        return [t for g in self.groups for t in g.targets]

    def health(self) -> list[dict[str, Any]]:
        """Per target: redacted URL, sent, failed, dropped, queued."""
        return [t.health() for t in self.targets]

    # --- on the loop --------------------------------------------------------------------------

    def on_change(self, change: Change) -> None:
        """An event change (called on the loop): queue the notifications it causes, nothing more."""
        if not change.after.get("announced", True) or not self.groups:
            return
        after = public_message(change)["after"]  # the record every consumer gets: with clip and has_clip
        event_id = after["id"]
        for group in self.groups:
            if change.type == "end":
                notified = group.decided.pop(event_id, False)
                if notified and group.config.clip and self.clip_path is not None:
                    self._queue(group, self._clip_notice(after))
                continue
            if event_id in group.decided or not group.matches(after):
                continue
            if change.type == "update" and not group.config.zones:
                continue  # without zones only `new` notifies
            if self.muted(after["camera"]):
                group.decide(event_id, False)  # held, not postponed: unmuting never sends a late burst
                self.held += 1
                continue
            key, now = (after["camera"], after["label"]), self.clock()
            last = group.last_sent.get(key)
            if last is not None and now - last < group.config.cooldown_s:
                group.decide(event_id, False)
                continue
            group.last_sent[key] = now
            group.decide(event_id, True)
            when = after["start_time"] if change.type == "new" else time.time()
            self._queue(group, self._event_notice(after, when, group.config.attach, change.snapshot))

    def _queue(self, group: Group, notice: Notice) -> None:
        for target in group.targets:
            target.outbox.put(notice)

    def _link(self, event_id: str) -> str:
        return f"{self.public_url}/#/events/{event_id}" if self.public_url else ""

    def _camera(self, after: dict[str, Any]) -> str:
        return self.name(after["camera"]) or after["camera"]

    def _event_notice(self, after: dict[str, Any], when: float, attach: str, frame: bytes | None) -> Notice:
        title = f"{after['label'].capitalize()} at {self._camera(after)}"
        zones = after.get("entered_zones") or []
        lines = [f"At {local_time(when)}" + (f", in {', '.join(zones)}" if zones else "") + "."]
        if link := self._link(after["id"]):
            lines.append(link)
        return Notice(title, "\n".join(lines), dict(after), attach, frame)

    def _clip_notice(self, after: dict[str, Any]) -> Notice:
        title = f"{after['label'].capitalize()} at {self._camera(after)}: the clip"
        start, end = after["start_time"], after.get("end_time") or after["start_time"]
        lines = [f"From {local_time(start)}, {end - start:.0f} s."]
        if link := self._link(after["id"]):
            lines.append(link)
        return Notice(title, "\n".join(lines), dict(after), "clip")

    async def start(self, spawn: Spawn) -> None:
        """One delivery task per target."""
        self._spawn = spawn
        for target in self.targets:
            self._serve(target)

    def _serve(self, target: Target) -> None:
        if self._spawn is not None and target not in self._tasks:
            self._tasks[target] = self._spawn("notifications", partial(target.outbox.serve, partial(self._deliver, target)),
                                              f"notify-{target.label}", restart=True)

    async def set_rules(self, configs: tuple[NotifyConfig, ...]) -> None:
        """New [[notify]] rules, taken at once (PATCH /api/config): a URL that stays keeps its target (queue,
        counters, delivery task); a group at the same place keeps its cooldowns; a URL gone stops."""
        known = {t._url: t for t in self.targets}
        groups = [Group(i, c, known) for i, c in enumerate(configs)]
        for old, new in zip(self.groups, groups):
            new.last_sent, new.decided = old.last_sent, old.decided
        self.groups = groups
        for target in self.targets:
            self._serve(target)
        await cancel_and_wait(*(self._tasks.pop(t) for t in known.values() if t in self._tasks))

    async def stop(self, grace_s: float = 2.0) -> None:
        """Deliver what is queued for up to `grace_s` (the events ended at shutdown), then stop."""
        if self._tasks:
            await drained((t.outbox for t in self.targets), grace_s)
        await cancel_and_wait(*self._tasks.values())
        self._tasks = {}

    async def _deliver(self, target: Target, notice: Notice) -> None:
        problem = ""
        for delay in (*self.retry_delays_s, None):
            outcome, problem = await self._attempt(target, notice)
            if outcome == "sent":
                target.sent += 1
                return
            if outcome == "skipped":
                return
            if delay is not None:
                await asyncio.sleep(delay)
        target.failed += 1
        self._failures.warning(target.label, "notification to %s (%s) failed after %d retries: %s; %d failed so far",
                               target.url, target.label, len(self.retry_delays_s), problem, target.failed)

    async def _attempt(self, target: Target, notice: Notice) -> Outcome:
        """One send, bounded by its timeout."""
        timeout = CLIP_TIMEOUT_S if notice.kind == "clip" else TIMEOUT_S
        if target.busy is not None and not target.busy.done():
            # the last attempt outlived its timeout: a second one in parallel could deliver twice
            try:
                async with asyncio.timeout(timeout):
                    outcome, _ = await asyncio.shield(target.busy)
            except TimeoutError:
                return "failed", f"the previous attempt has had no answer for {2 * timeout:g} s"
            if outcome == "sent" and target.busy_notice is notice:
                return "sent", ""  # it got through late: do not send it again
        future = _run_in_thread(lambda: self._send(target, target.plugin, notice), f"notify-{target.label}")
        target.busy, target.busy_notice = future, notice
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            return "failed", f"no answer within {timeout:g} s"

    # --- on a sender thread ----------------------------------------------------------------------

    def _send(self, target: Target, plugin: Any, notice: Notice) -> Outcome:
        """Send `notice` to one target (blocking); why not, with every secret scrubbed."""
        from apprise import AppriseAttachment
        from apprise.attachment.file import AttachFile
        from apprise.attachment.memory import AttachMemory

        body = notice.body
        attach: AttachFile | AttachMemory | None = None
        try:
            if notice.kind == "clip":
                path = self.clip_path(notice.record["id"]) if self.clip_path else None
                if path is None:
                    return "skipped", ""  # nothing was recorded for this event
                size = path.stat().st_size
                if not target.attachments:
                    body += "\n(This service cannot take attachments; the clip is on the event page.)"
                elif size > MAX_CLIP_BYTES:
                    body += (f"\n(The clip, {size / 1e6:.1f} MB, is over the {MAX_CLIP_BYTES // 2**20} MB"
                             " a message can carry.)")
                else:
                    attach = AttachFile(str(path), name=path.name)
            elif target.attachments and (jpeg := notice.picture(self.snapshot)) is not None:
                attach = AttachMemory(content=jpeg, name=f"{notice.record.get('id', 'camserver')}.jpg",
                                      mimetype="image/jpeg")
            with apprise_warnings() as warnings:
                ok = plugin.notify(title=notice.title, body=body, body_format="text",  # escaped for HTML services
                                   attach=AppriseAttachment(attach) if attach is not None else None)
        except Exception as exc:  # a plugin bug or a file that went away: this message fails, not the task
            return "failed", scrub(f"{type(exc).__name__}: {exc}")
        if ok:
            return "sent", ""
        return "failed", warnings[-1] if warnings else "the service did not take the message"

    # --- the test endpoint -----------------------------------------------------------------------

    async def send_test(self, camera: str, jpeg: bytes | None) -> list[dict[str, Any]]:
        """Send a test message (with `jpeg` when given) to every target at once; per-target results."""
        title = "camserver: test notification"
        body = (f"A test from camserver at {local_time(time.time())}: "
                + (f"the latest picture of camera {camera}." if jpeg else f"camera {camera} has no picture right now."))
        if self.public_url:
            body += f"\n{self.public_url}/"
        notice = Notice(title, body, {"id": f"test-{camera}"}, "test", jpeg)

        async def one(target: Target) -> dict[str, Any]:
            future = _run_in_thread(lambda: self._send(target, target.fresh_plugin(), notice),
                                    f"notify-test-{target.label}")
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    outcome, problem = await asyncio.shield(future)
            except TimeoutError:
                outcome, problem = "failed", f"no answer within {TIMEOUT_S:g} s"
            ok = outcome == "sent"
            return {"target": target.label, "url": target.url, "ok": ok, "error": None if ok else problem}

        return list(await asyncio.gather(*(one(t) for t in self.targets)))
