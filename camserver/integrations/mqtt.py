"""MQTT: camera and object states, events and snapshots, with Home Assistant discovery.

Topics under `mqtt.topic_prefix` (a camera id and a label appear as their topic keys, see
`homeassistant.topic_key`: themselves unless they hold characters a topic level cannot):

    available                    online / offline (the last will)      retained
    <camera>/status              online / offline                      retained
    <camera>/motion              ON / OFF (motion detection on)         retained
    <camera>/<label>             count of current objects, on change
    events                       {"type", "before", "after", "reasons"} (events/shape.py)
    <camera>/<label>/snapshot    JPEG of the latest event's best frame  retained
    <camera>/mute                ON / OFF (notifications held)          retained
    <camera>/mute/set            ON / OFF: a command (Home Assistant's switch); not retained

MQTT never gets in the way: it runs in its own task, reconnects with backoff (1 s doubling to 30 s) and logs only when its state
changes; its queue is bounded (the oldest message goes, counted); a message the client refuses is dropped, counted; should the
task die anyway, the supervisor restarts it. On every (re)connect, and whenever Home Assistant announces itself on
`<discovery_prefix>/status`, the discovery configs and the current states are sent again.

No state outlives the server: a clean stop says every camera offline, its motion OFF and its counts 0 before `available` goes
offline. After a crash, the next start reads back what the broker retained: a camera's `online` or motion `ON` that is not true
now is set offline / OFF, and every label entity's count of ours goes to 0 unless an object is there now; so do the labels of
events the crash left open.

Entities this server made earlier that its configuration no longer makes are removed (an empty retained config): on connecting
it reads back the retained discovery configs, keeps those of other integrations and other camserver instances (another
availability topic) alone, and clears the label entities of labels no longer in `events.labels` at once, and the entities of
cameras it does not know (not in `cameras.ids`, not connected) once they have had `forget_grace_s` after start-up to reconnect.
Every entity this module publishes comes from `HomeAssistantDiscovery`: anything else of ours is stale.
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
from typing import Any, Callable, Iterable

import aiomqtt

from ..config import MqttConfig
from ..events.rules import Change
from ..events.shape import message as public_message
from ..logsafe import ThrottledLog, printable
from ..supervise import Spawn, cancel_and_wait, describe
from .homeassistant import LABEL_KEYS, HomeAssistantDiscovery, Message, MuteControl, MuteSwitch, label_of_key, topic_key
from .outbox import Outbox

log = logging.getLogger(__name__)

QUEUE = 1000  # messages waiting for the broker
FORGET_GRACE_S = 120.0  # after start-up, for a camera that is not declared to reconnect (its backoff caps at 30 s)
RETAINED_SETTLE_S = 2.0  # after subscribing, for the broker to send the retained configs and states
BACKOFF_S = (1.0, 30.0)


class MqttPublisher(MuteSwitch):
    """Keeps a broker up to date with cameras, objects and events.

    Args:
        config: the [mqtt] table.
        labels: events.labels (["*"]: a label's entities appear with its first event).
        motion: whether a camera's motion detection is on: then it has a motion binary_sensor.
        public_url: http.public_url, for each device's link to its camera's page.
        firmware: the firmware version a camera's board last said it runs, or None.
        mute: the mutes (integrations/mute.py): each camera's mute switch shows and sets its mute.
    """

    def __init__(self, config: MqttConfig, labels: tuple[str, ...],
                 motion: Callable[[str], bool] = lambda camera: False, public_url: str = "",
                 firmware: Callable[[str], str | None] = lambda camera: None, mute: MuteControl | None = None,
                 name: Callable[[str], str | None] = lambda camera: None) -> None:
        self.config, self.mute = config, mute
        if mute is not None:
            mute.listeners.append(self.camera_mute)
        self.motion_sensor, self.firmware = motion, firmware
        self.motion: dict[str, bool] = {}  # camera id -> motion ON
        self.prefix = config.topic_prefix.rstrip("/")
        self.discovery = config.discovery_prefix.rstrip("/")
        self.ha = HomeAssistantDiscovery(self.discovery, self.prefix, public_url, name)
        self.fixed_labels = None if "*" in labels else list(labels)  # events.labels
        self.state = "disabled" if not config.host else "connecting"
        self.problem = ""  # why it is not connected, as the broker or the network said
        self.outbox: Outbox[Message] = Outbox(QUEUE)
        self.cameras: dict[str, bool] = {}  # camera id -> online
        self.labels: dict[str, dict[str, str]] = {}  # camera id -> topic key -> label announced to Home Assistant
        self.counts: Counter[tuple[str, str]] = Counter()  # (camera, label key) -> current objects
        self.forget_grace_s = FORGET_GRACE_S
        self.removed = 0  # stale discovery configs cleared since start-up
        self.refused = 0  # messages the client refused (dropped)
        self.collisions = 0  # labels whose topic key another label of the camera has
        self._started = time.monotonic()
        self._unknown: dict[str, str] = {}  # retained discovery topic of ours -> its camera key, not known yet
        self._firmware: dict[str, str | None] = {}  # camera id -> the firmware version its configs last said
        self._task: asyncio.Task[None] | None = None
        self._problems = ThrottledLog(log, interval_s=60.0)

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
                self.labels.setdefault(camera, {})[topic_key(label)] = label
            self._announce(camera)
        self._put((f"{self.ha.state_topic(camera)}/status", "online" if online else "offline", True))

    def camera_motion(self, camera: str, on: bool) -> None:
        """The camera's motion turned on, or off after motion.mqtt_off_delay_s without (retained ON/OFF)."""
        if not self.enabled:
            return
        self.motion[camera] = on
        self._put((f"{self.ha.state_topic(camera)}/motion", "ON" if on else "OFF", True))

    def camera_hello(self, camera: str, renamed: bool = False) -> None:
        """A camera said hello, or was `renamed` from the page: when its firmware version or its name is another,
        its device's configs go again."""
        if self.enabled and camera in self.cameras and (renamed or self._firmware.get(camera) != self.firmware(camera)):
            self._announce(camera)

    def camera_forgotten(self, camera: str) -> None:
        """The server forgot a camera id: its Home Assistant entities go too (empty retained configs)."""
        if not self.enabled or camera not in self.cameras:
            return
        for topic, _, _ in self._discovery(camera):
            self._put((topic, b"", True))
        self.cameras.pop(camera, None)
        self.labels.pop(camera, None)
        self._firmware.pop(camera, None)

    def objects_gone(self, objects: Iterable[tuple[str, str]]) -> None:
        """(camera, label) of events a crash left open: their counts are 0 now."""
        if not self.enabled:
            return
        for camera, label in sorted(set(objects)):
            if self.counts[(camera, topic_key(label))] <= 0:
                self._put((self.ha.state_topic(camera, label), "0", False))

    def on_change(self, change: Change) -> None:
        """An event change: counts, the events topic, snapshots."""
        if not self.enabled:
            return
        after = change.after
        camera, label = after["camera"], after["label"]
        found, labels = topic_key(label), self.labels.setdefault(camera, {})
        key: str | None = found  # None: the label is left out of MQTT
        if found not in labels:
            labels[found] = label  # a new label with labels = ["*"]: announce its entities
            for message in self.ha.label_entities(camera, label, self.firmware(camera)):
                self._put(message)
        elif labels[found] != label:
            self.collisions += 1
            self._problems.warning(f"collision {camera}", "camera %s: labels %s and %s share the MQTT topic key %s; "
                                   "the second is left out of MQTT", printable(camera), printable(labels[found]),
                                   printable(label), key)
            key = None
        if key is not None and change.type in ("new", "end"):
            self.counts[(camera, key)] += 1 if change.type == "new" else -1
            self._put((self.ha.state_topic(camera, label), str(max(0, self.counts[(camera, key)])), False))
        if after.get("announced", True):
            self._put((f"{self.prefix}/events", json.dumps(public_message(change)), False))
        if key is not None and change.snapshot is not None:
            self._put((f"{self.ha.state_topic(camera, label)}/snapshot", change.snapshot, True))

    @property
    def dropped(self) -> int:
        """Messages dropped from a full queue or refused by the client."""
        return self.outbox.dropped + self.refused

    def _put(self, message: Message) -> None:
        self.outbox.put(message)

    # --- Home Assistant discovery -------------------------------------------------------------

    def _announce(self, camera: str) -> None:
        for message in self._discovery(camera):
            self._put(message)

    def _discovery(self, camera: str) -> list[Message]:
        if not self.config.homeassistant:
            return []
        self._firmware[camera] = firmware = self.firmware(camera)
        return self.ha.camera_entities(camera, self.motion_sensor(camera), self.labels.get(camera, {}).values(),
                                       firmware)

    # --- what the broker retained from an earlier run ------------------------------------------

    def _camera_of_key(self, camera_key: str) -> str | None:
        return next((c for c in self.cameras if topic_key(c) == camera_key), None)

    def _made(self, camera: str, key: str, topic: str) -> bool:
        """Whether this configuration makes the entity of a known camera (now, or once its label is seen)."""
        if not self.config.homeassistant:
            return False
        if topic in {t for t, _, _ in self._discovery(camera)}:
            return True
        # labels = ["*"]: a label's entities appear with its first event, so any label is still made
        return self.fixed_labels is None and key.endswith(LABEL_KEYS)

    def _retained_config(self, topic: str, payload: Any) -> None:
        """A retained discovery config read back on connecting: its count reset, and cleared if no longer made."""
        owned = self.ha.ours(topic, payload)
        if owned is None:
            return
        camera_key, key = owned
        label = label_of_key(key)
        camera = self._camera_of_key(camera_key)
        # an object counted when the last run ended is gone: its count is 0 (and the occupancy off)
        if key.endswith("_count") and label is not None and self.counts[(camera or "", label)] <= 0:
            self._put((self.ha.key_topic(camera_key, label), "0", False))
        if camera is not None:
            stale = not self._made(camera, key, topic)
        elif not self.config.homeassistant or (label is not None and self.fixed_labels is not None
                                               and label not in {topic_key(f) for f in self.fixed_labels}):
            stale = True  # gone whichever camera it is: no need to wait for the camera
        else:
            self._unknown[topic] = camera_key  # the camera may still reconnect: decided after the grace
            return
        if stale:
            self._clear(topic, f"{camera_key}/{key}")

    def _retained_state(self, topic: str, payload: Any) -> None:
        """A retained camera status or motion read back on connecting: offline / OFF unless true now."""
        camera_key, what = topic[len(self.prefix) + 1:].split("/")
        camera = self._camera_of_key(camera_key)
        if what == "status" and payload in (b"online", "online") and not (camera and self.cameras[camera]):
            self._put((topic, "offline", True))
        elif what == "motion" and payload in (b"ON", "ON") and not (camera and self.motion.get(camera)):
            self._put((topic, "OFF", True))
        else:
            return
        log.info("MQTT: %s was left %s by the last run; now %s", printable(topic), printable(payload),
                 "offline" if what == "status" else "OFF")

    def _clear(self, topic: str, what: str) -> None:
        log.info("removing the Home Assistant entity %s: the configuration no longer makes it", printable(what))
        self.removed += 1
        self._put((topic, b"", True))

    async def _forget_unknown_cameras(self, client: aiomqtt.Client, wildcard: str) -> None:
        """After the grace, clear the entities of cameras that never came back; then stop reading configs."""
        wait = max(self._started + self.forget_grace_s - time.monotonic(), RETAINED_SETTLE_S)
        await asyncio.sleep(wait)
        for topic, camera_key in sorted(self._unknown.items()):
            if self._camera_of_key(camera_key) is None:
                self._clear(topic, f"{camera_key}/{topic.split('/')[-2]}")
        self._unknown.clear()
        await client.unsubscribe(wildcard)

    @staticmethod
    async def _stop_reading_states(client: aiomqtt.Client, wildcards: list[str]) -> None:
        """The retained states have come once the broker had time to send them; later ones are our own."""
        await asyncio.sleep(RETAINED_SETTLE_S)
        await client.unsubscribe(wildcards)

    def _everything(self) -> list[Message]:
        """Discovery and every current state: what a broker or Home Assistant that restarted needs."""
        messages: list[Message] = [(f"{self.prefix}/available", "online", True)]
        for camera, online in self.cameras.items():
            state = self.ha.state_topic(camera)
            messages += self._discovery(camera)
            messages.append((f"{state}/status", "online" if online else "offline", True))
            messages.append(self._mute_state(camera))
            if camera in self.motion:
                messages.append((f"{state}/motion", "ON" if self.motion[camera] else "OFF", True))
            for key in sorted(self.labels.get(camera, {})):
                messages.append((f"{state}/{key}", str(max(0, self.counts[(camera, key)])), False))
        return messages

    def _going_down(self) -> list[Message]:
        """Every camera offline, its motion OFF and its counts 0, then the server offline: what a clean stop says."""
        messages: list[Message] = []
        for camera in self.cameras:
            state = self.ha.state_topic(camera)
            messages.append((f"{state}/status", "offline", True))
            if camera in self.motion or self.motion_sensor(camera):
                messages.append((f"{state}/motion", "OFF", True))
            for key in sorted(self.labels.get(camera, {})):
                if self.counts[(camera, key)] > 0:
                    messages.append((f"{state}/{key}", "0", False))
        return messages + [(f"{self.prefix}/available", "offline", True)]

    # --- the connection -----------------------------------------------------------------------

    def start(self, spawn: Spawn) -> None:
        """Connect in the background (nothing waits for the broker); the supervisor restarts a task that dies."""
        self._started = time.monotonic()
        if self.enabled:
            self._task = spawn("mqtt", self._run, "mqtt", restart=True)

    async def stop(self) -> None:
        """Say every camera offline and the server offline (a clean stop sends no last will), then disconnect."""
        if self._task is None:
            return
        for message in self._going_down():
            self._put(message)
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
        try:
            await self._connect_forever()
        except Exception as exc:  # a bug, not the broker: the supervisor logs it and starts the task again
            self._set_state("failed", describe(exc))
            raise

    async def _connect_forever(self) -> None:
        delay = BACKOFF_S[0]
        while True:
            try:
                async with self._client() as client, asyncio.TaskGroup() as group:
                    self._set_state("connected")
                    delay = BACKOFF_S[0]
                    # watched from the first moment: a broker lost while subscribing is noticed within a second
                    group.create_task(self._watch(client))
                    configs = f"{self.discovery}/+/+/+/config"  # read back what is retained, to clear the stale
                    states = [f"{self.prefix}/+/status", f"{self.prefix}/+/motion"]  # and to set right
                    await self._greet(client, configs, states)
                    group.create_task(self._send(client))
                    group.create_task(self._listen(client))
                    group.create_task(self._forget_unknown_cameras(client, configs))
                    group.create_task(self._stop_reading_states(client, states))
            except* aiomqtt.MqttError as errors:
                self._set_state("disconnected", str(errors.exceptions[0]))
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_S[1])

    async def _greet(self, client: aiomqtt.Client, configs: str, states: list[str]) -> None:
        """Subscribe to what camserver reads back, then send discovery and every current state."""
        wanted = [configs, *states, *([f"{self.discovery}/status"] if self.config.homeassistant else []),
                  *([f"{self.prefix}/+/mute/set"] if self.mute is not None else [])]
        await client.subscribe([(topic, 0) for topic in wanted])
        for message in self._everything():
            await self._publish(client, message)

    async def _publish(self, client: aiomqtt.Client, message: Message) -> None:
        try:
            await client.publish(message[0], message[1], qos=0, retain=message[2])
        except ValueError as exc:  # paho refuses the topic or payload: this message can never go, the rest can
            self.refused += 1
            self._problems.warning("refused", "MQTT: a message to %s was refused and dropped (%d so far): %s",
                                   printable(message[0]), self.refused, exc)

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            await self.outbox.ready.wait()
            self.outbox.ready.clear()
            while self.outbox:
                message = self.outbox.items.popleft()
                try:
                    await self._publish(client, message)
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
            topic = message.topic
            if message.retain and topic.matches(f"{self.discovery}/+/+/+/config"):
                self._retained_config(str(topic), message.payload)
            elif message.retain and (topic.matches(f"{self.prefix}/+/status") or topic.matches(f"{self.prefix}/+/motion")):
                self._retained_state(str(topic), message.payload)
            elif topic.matches(f"{self.prefix}/+/mute/set"):
                await self._mute_command(str(topic), message.payload, message.retain)
            elif topic.matches(f"{self.discovery}/status") and message.payload in (b"online", "online"):
                log.info("Home Assistant came online: sending discovery and states again")
                for item in self._everything():
                    self._put(item)
