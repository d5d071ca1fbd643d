"""MQTT: camera and object states, events and snapshots, with Home Assistant discovery.

Topics under `mqtt.topic_prefix`:

    available                    online / offline (the last will)      retained
    <camera>/status              online / offline                      retained
    <camera>/motion              ON / OFF (motion detection on)         retained
    <camera>/<label>             count of current objects, on change
    events                       {"type", "before", "after"}
    <camera>/<label>/snapshot    JPEG of the latest event's best frame  retained

MQTT never gets in the way: it runs in its own task, reconnects with backoff (1 s doubling to
30 s) and logs only when its state changes; its outgoing queue is bounded (the oldest message
goes, counted). On every (re)connect, and whenever Home Assistant announces itself on
`<discovery_prefix>/status`, the discovery configs and the current states are sent again.

Entities this server made earlier that its configuration no longer makes are removed (an empty
retained config): on connecting it reads back the retained discovery configs, keeps those of other
integrations and other camserver instances (another availability topic) alone, and clears the
label entities of labels no longer in `events.labels` at once, and the entities of cameras it does
not know (not in `cameras.ids`, not connected) once they have had `forget_grace_s` after start-up to
reconnect. Every entity this module publishes comes from `_discovery()`: anything else of ours is stale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from collections import Counter
from contextlib import suppress
from typing import Any, Callable

import aiomqtt

from ..config import MqttConfig
from ..events.rules import Change
from ..supervise import Spawn, cancel_and_wait
from ..logsafe import printable
from .outbox import Outbox

log = logging.getLogger(__name__)

QUEUE = 1000  # messages waiting for the broker
FORGET_GRACE_S = 120.0  # after start-up, for a camera that is not declared to reconnect (its backoff caps at 30 s)
RETAINED_SETTLE_S = 2.0  # after subscribing, for the broker to send the retained configs
LABEL_KEYS = ("_occupancy", "_count", "_snapshot")  # the label entities' keys end so
BACKOFF_S = (1.0, 30.0)
Message = tuple[str, bytes | str, bool]  # topic, payload, retain


class MqttPublisher:
    """Keeps a broker up to date with cameras, objects and events."""

    def __init__(self, config: MqttConfig, labels: tuple[str, ...],
                 motion: Callable[[str], bool] = lambda camera: False) -> None:
        self.config = config
        self.motion_sensor = motion  # whether a camera's motion detection is on: then it has a motion binary_sensor
        self.motion: dict[str, bool] = {}  # camera id -> motion ON
        self.prefix = config.topic_prefix.rstrip("/")
        self.discovery = config.discovery_prefix.rstrip("/")
        self.fixed_labels = None if "*" in labels else list(labels)  # events.labels
        self.state = "disabled" if not config.host else "connecting"
        self.problem = ""  # why it is not connected, as the broker or the network said
        self.outbox: Outbox[Message] = Outbox(QUEUE)
        self.cameras: dict[str, bool] = {}  # camera id -> online
        self.labels: dict[str, set[str]] = {}  # camera id -> labels announced to Home Assistant
        self.counts: Counter[tuple[str, str]] = Counter()  # (camera, label) -> current objects
        self.forget_grace_s = FORGET_GRACE_S
        self.removed = 0  # stale discovery configs cleared since start-up
        self._started = time.monotonic()
        self._unknown: dict[str, str] = {}  # retained discovery topic of ours -> its camera, not known yet
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """Whether mqtt.host is set."""
        return bool(self.config.host)

    # --- what happens in camserver (called on the loop) ---------------------------------------

    def camera_online(self, camera: str, online: bool) -> None:
        """A camera connected or went away."""
        if not self.enabled:
            return
        new = camera not in self.cameras
        self.cameras[camera] = online
        if new:
            for label in self.fixed_labels or []:
                self.labels.setdefault(camera, set()).add(label)
            for message in self._discovery(camera):
                self._put(message)
        self._put((f"{self.prefix}/{camera}/status", "online" if online else "offline", True))

    def camera_motion(self, camera: str, on: bool) -> None:
        """The camera's motion turned on, or off after motion.mqtt_off_delay_s without (retained ON/OFF)."""
        if not self.enabled:
            return
        self.motion[camera] = on
        self._put((f"{self.prefix}/{camera}/motion", "ON" if on else "OFF", True))

    def camera_forgotten(self, camera: str) -> None:
        """The server forgot a camera id: its Home Assistant entities go too (empty retained configs)."""
        if not self.enabled or camera not in self.cameras:
            return
        for topic, _, _ in self._discovery(camera):
            self._put((topic, b"", True))
        self.cameras.pop(camera, None)
        self.labels.pop(camera, None)

    def on_change(self, change: Change) -> None:
        """An event change: counts, the events topic, snapshots."""
        if not self.enabled:
            return
        after = change.after
        camera, label = after["camera"], after["label"]
        if label not in self.labels.setdefault(camera, set()):
            self.labels[camera].add(label)  # a new label with labels = ["*"]: announce its entities
            for message in self._label_discovery(camera, label):
                self._put(message)
        if change.type in ("new", "end"):
            self.counts[(camera, label)] += 1 if change.type == "new" else -1
            self._put((f"{self.prefix}/{camera}/{label}", str(max(0, self.counts[(camera, label)])), False))
        if after.get("announced", True):
            message = {"type": change.type, "before": change.before, "after": after}
            self._put((f"{self.prefix}/events", json.dumps(message), False))
        if change.snapshot is not None:
            self._put((f"{self.prefix}/{camera}/{label}/snapshot", change.snapshot, True))

    @property
    def dropped(self) -> int:
        """Messages dropped from a full queue."""
        return self.outbox.dropped

    def _put(self, message: Message) -> None:
        self.outbox.put(message)

    # --- Home Assistant discovery -------------------------------------------------------------

    def _device(self, camera: str) -> dict[str, Any]:
        return {"identifiers": [f"camserver_{camera}"], "name": f"camserver {camera}", "manufacturer": "camserver",
                "model": "ESP32-CAM"}

    def _entity(self, camera: str, kind: str, key: str, name: str, **fields: Any) -> Message:
        unique = f"camserver_{camera}_{key}"
        config = {"name": name, "unique_id": unique, "object_id": unique,
                  "availability_topic": f"{self.prefix}/available", "device": self._device(camera), **fields}
        return (f"{self.discovery}/{kind}/camserver_{camera}/{key}/config", json.dumps(config), True)

    def _label_discovery(self, camera: str, label: str) -> list[Message]:
        if not self.config.homeassistant:
            return []
        state = f"{self.prefix}/{camera}/{label}"
        return [
            self._entity(camera, "binary_sensor", f"{label}_occupancy", f"{label} occupancy", device_class="occupancy",
                         state_topic=state, value_template="{{ 'ON' if value | int > 0 else 'OFF' }}"),
            self._entity(camera, "sensor", f"{label}_count", f"{label} count", state_topic=state,
                         state_class="measurement", unit_of_measurement="objects"),
            self._entity(camera, "image", f"{label}_snapshot", f"{label} snapshot", image_topic=f"{state}/snapshot",
                         content_type="image/jpeg"),
        ]

    def _discovery(self, camera: str) -> list[Message]:
        if not self.config.homeassistant:
            return []
        messages = [self._entity(camera, "binary_sensor", "connectivity", "connected", device_class="connectivity",
                                 state_topic=f"{self.prefix}/{camera}/status", payload_on="online",
                                 payload_off="offline")]
        if self.motion_sensor(camera):
            messages.append(self._entity(camera, "binary_sensor", "motion", "motion", device_class="motion",
                                         state_topic=f"{self.prefix}/{camera}/motion", payload_on="ON",
                                         payload_off="OFF"))
        for label in sorted(self.labels.get(camera, ())):
            messages += self._label_discovery(camera, label)
        return messages

    # --- stale entities ------------------------------------------------------------------------

    def _ours(self, topic: str, payload: Any) -> tuple[str, str] | None:
        """(camera, key) of a retained discovery config this server's topic prefix made; None for others'."""
        parts = topic[len(self.discovery) + 1:].split("/")
        if len(parts) != 4 or not parts[1].startswith("camserver_") or not payload:
            return None  # another integration's, or a config already cleared
        try:
            config = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(config, dict) or config.get("availability_topic") != f"{self.prefix}/available":
            return None  # another camserver's (another topic prefix)
        return parts[1][len("camserver_"):], parts[2]

    def _made(self, camera: str, key: str, topic: str) -> bool:
        """Whether this configuration makes the entity of a known camera (now, or once its label is seen)."""
        if not self.config.homeassistant:
            return False
        if topic in {t for t, _, _ in self._discovery(camera)}:
            return True
        # labels = ["*"]: a label's entities appear with its first event, so any label is still made
        return self.fixed_labels is None and key.endswith(LABEL_KEYS)

    def _retained_config(self, topic: str, payload: Any) -> None:
        """A retained discovery config read back on connecting: clear it if the configuration no longer makes it."""
        owned = self._ours(topic, payload)
        if owned is None:
            return
        camera, key = owned
        label = next((key[: -len(end)] for end in LABEL_KEYS if key.endswith(end)), None)
        if camera in self.cameras:
            stale = not self._made(camera, key, topic)
        elif not self.config.homeassistant or (label is not None and self.fixed_labels is not None
                                               and label not in self.fixed_labels):
            stale = True  # gone whichever camera it is: no need to wait for the camera
        else:
            self._unknown[topic] = camera  # the camera may still reconnect: decided after the grace
            return
        if stale:
            self._clear(topic, f"{camera}/{key}")

    def _clear(self, topic: str, what: str) -> None:
        log.info("removing the Home Assistant entity %s: the configuration no longer makes it", printable(what))
        self.removed += 1
        self._put((topic, b"", True))

    async def _forget_unknown_cameras(self, client: aiomqtt.Client, wildcard: str) -> None:
        """After the grace, clear the entities of cameras that never came back; then stop reading configs."""
        wait = max(self._started + self.forget_grace_s - time.monotonic(), RETAINED_SETTLE_S)
        await asyncio.sleep(wait)
        for topic, camera in sorted(self._unknown.items()):
            if camera not in self.cameras:
                self._clear(topic, f"{camera}/{topic.split('/')[-2]}")
        self._unknown.clear()
        await client.unsubscribe(wildcard)

    def _everything(self) -> list[Message]:
        """Discovery and every current state: what a broker or Home Assistant that restarted needs."""
        messages: list[Message] = [(f"{self.prefix}/available", "online", True)]
        for camera, online in self.cameras.items():
            messages += self._discovery(camera)
            messages.append((f"{self.prefix}/{camera}/status", "online" if online else "offline", True))
            if camera in self.motion:
                messages.append((f"{self.prefix}/{camera}/motion", "ON" if self.motion[camera] else "OFF", True))
            for label in sorted(self.labels.get(camera, ())):
                messages.append((f"{self.prefix}/{camera}/{label}", str(max(0, self.counts[(camera, label)])), False))
        return messages

    # --- the connection -----------------------------------------------------------------------

    def start(self, spawn: Spawn) -> None:
        """Connect in the background (nothing waits for the broker)."""
        self._started = time.monotonic()
        if self.enabled:
            self._task = spawn("mqtt", self._run(), "mqtt")

    async def stop(self) -> None:
        """Say offline (a clean stop sends no last will), then disconnect."""
        if self._task is None:
            return
        self._put((f"{self.prefix}/available", "offline", True))
        with suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                while self.outbox and self.state == "connected":
                    await asyncio.sleep(0.05)
        await cancel_and_wait(self._task)

    def _client(self) -> aiomqtt.Client:
        c = self.config
        tls = None
        if c.tls:
            tls = ssl.create_default_context(cafile=c.ca_file or None)
        return aiomqtt.Client(
            c.host, c.port, username=c.username or None, password=c.password or None,
            identifier=c.client_id or f"camserver-{socket.gethostname()}",
            will=aiomqtt.Will(f"{self.prefix}/available", "offline", qos=1, retain=True),
            tls_context=tls, keepalive=10, timeout=10,
        )

    def _set_state(self, state: str, problem: str = "") -> None:
        problem = printable(problem or "connection lost") if state != "connected" else ""
        if (state, problem) == (self.state, self.problem):
            return  # one line per change of state or of the broker's reason, not one per retry
        if state == "connected":
            log.info("MQTT connected to %s:%d", self.config.host, self.config.port)
        else:
            log.warning("MQTT %s:%d not connected (%s); retrying with backoff", self.config.host, self.config.port,
                        problem)
        self.state, self.problem = state, problem

    async def _run(self) -> None:
        delay = BACKOFF_S[0]
        while True:
            try:
                async with self._client() as client:
                    self._set_state("connected")
                    delay = BACKOFF_S[0]
                    if self.config.homeassistant:
                        await client.subscribe(f"{self.discovery}/status")
                    configs = f"{self.discovery}/+/+/+/config"  # read back what is retained, to clear the stale
                    await client.subscribe(configs)
                    for message in self._everything():
                        await client.publish(message[0], message[1], qos=0, retain=message[2])
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._send(client))
                        group.create_task(self._listen(client))
                        group.create_task(self._watch(client))
                        group.create_task(self._forget_unknown_cameras(client, configs))
            except* aiomqtt.MqttError as errors:
                self._set_state("disconnected", str(errors.exceptions[0]))
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_S[1])

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            await self.outbox.ready.wait()
            self.outbox.ready.clear()
            while self.outbox:
                message = self.outbox.items.popleft()
                try:
                    await client.publish(message[0], message[1], qos=0, retain=message[2])
                except aiomqtt.MqttError:
                    self.outbox.items.appendleft(message)  # sent again after the reconnect
                    raise

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        # A broker killed at the wrong moment can leave aiomqtt waiting forever for messages on a
        # socket paho has already dropped; paho's own connected flag tells, so check it.
        paho = getattr(client, "_client", None)
        if paho is None:
            return
        while True:
            await asyncio.sleep(1.0)
            if not paho.is_connected():
                raise aiomqtt.MqttError("connection lost")

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if message.retain and message.topic.matches(f"{self.discovery}/+/+/+/config"):
                self._retained_config(str(message.topic), message.payload)
            elif message.topic.matches(f"{self.discovery}/status") and message.payload in (b"online", "online"):
                log.info("Home Assistant came online: sending discovery and states again")
                for item in self._everything():
                    self._put(item)
