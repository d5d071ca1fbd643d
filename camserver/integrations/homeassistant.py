"""Home Assistant MQTT discovery: each camera's entities, and the names labels and camera ids take in topics.

A label comes from a model (a custom model's class names, the inference service's metadata) and may
hold anything: `#` and `+` are MQTT wildcards that no published topic may contain, `/` splits a topic
level, and Home Assistant reads a discovery topic only when its ids are `[A-Za-z0-9_-]`. So every label
and camera id goes into topics as its *topic key* (`topic_key`):

- the name itself when it is 1 to 64 of `[A-Za-z0-9_-]` and not `status` or `motion` (a camera's own
  topics): `person`, `traffic_light`, every camera id;
- otherwise its ASCII letters and digits with each other run of characters as `_`, cut to 40, then `_`
  and the first 8 hex digits of the name's SHA-256: `a#b` -> `a_b_<hash>`, `ünï code` -> `uni_code_<hash>`.
  A name that already ends in `_` and 8 hex digits is escaped too, so two names share a key only if
  their hashes collide (the publisher logs that).

A key depends on the name alone: the same across restarts and instances. Entity ids
(`default_entity_id`, and `object_id` for Home Assistant before 2025.10) are readable slugs of the
camera id and the label (`binary_sensor.camserver_door_cell_phone_occupancy`); Home Assistant adds
`_2` to an entity id already taken.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Protocol
from urllib.parse import quote

from .. import __version__
from ..logsafe import ThrottledLog, printable

Message = tuple[str, bytes | str, bool]  # topic, payload, retain

SAFE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
ESCAPED_KEY = re.compile(r".*_[0-9a-f]{8}")
RESERVED_KEYS = frozenset({"status", "motion", "mute"})  # <prefix>/<camera>/status, /motion, /mute are the camera's own
LABEL_KEYS = ("_occupancy", "_count", "_snapshot")  # the label entities' keys end so
MAX_FIRMWARE_CHARS = 64  # a board's version string, as its hello says it
MAX_LABEL_CHARS = 64  # of a label in an entity's name and id (a model may name a class with 10 KB)


def topic_key(name: str) -> str:
    """`name` as one MQTT topic level and Home Assistant discovery id: itself when safe, else a slug and a hash."""
    if SAFE_KEY.fullmatch(name) and not ESCAPED_KEY.fullmatch(name) and name not in RESERVED_KEYS:
        return name
    ascii_only = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9]+", "_", ascii_only).strip("_")[:40].rstrip("_") or "x"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug}_{digest}"


def entity_slug(text: str) -> str:
    """A Home Assistant object id: lowercase ASCII letters, digits and single inner underscores."""
    ascii_only = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "_", ascii_only).strip("_") or "camserver"


def label_of_key(key: str) -> str | None:
    """The label key of a label entity's key (`person_count` -> `person`), None for a camera entity's."""
    return next((key[: -len(end)] for end in LABEL_KEYS if key.endswith(end)), None)


class HomeAssistantDiscovery:
    """Builds the retained discovery configs of a camera's entities.

    Args:
        discovery_prefix: Home Assistant's discovery prefix (mqtt.discovery_prefix).
        prefix: camserver's topic prefix (mqtt.topic_prefix).
        public_url: http.public_url: each device links to its camera's page there ("" for none).
        name: a camera's name ([cameras.<id>] name), None for none: its device is named that, else "camserver <id>".
    """

    def __init__(self, discovery_prefix: str, prefix: str, public_url: str = "",
                 name: Callable[[str], str | None] = lambda camera: None) -> None:
        self.name = name
        self.discovery = discovery_prefix.rstrip("/")
        self.prefix = prefix.rstrip("/")
        self.public_url = public_url.rstrip("/")
        self.availability = f"{self.prefix}/available"

    def state_topic(self, camera: str, label: str | None = None) -> str:
        """Where the count of a label of a camera goes (or, with no label, the camera's own topic level)."""
        return self.key_topic(topic_key(camera), None if label is None else topic_key(label))

    def key_topic(self, camera_key: str, label_key: str | None = None) -> str:
        """`state_topic` from keys already made (as read back from a retained config)."""
        return f"{self.prefix}/{camera_key}" + ("" if label_key is None else f"/{label_key}")

    def device(self, camera: str, firmware: str | None) -> dict[str, Any]:
        """The device block: one device per camera, its board's firmware when it said, a link to its page."""
        device: dict[str, Any] = {"identifiers": [f"camserver_{topic_key(camera)}"], "name": self.name(camera) or f"camserver {camera}",
                                  "manufacturer": "camserver", "model": "ESP32-CAM"}
        if firmware:
            device["sw_version"] = firmware[:MAX_FIRMWARE_CHARS]
        if self.public_url:
            device["configuration_url"] = f"{self.public_url}/#/camera/{quote(camera, safe='')}"
        return device

    def entity(self, camera: str, platform: str, key: str, slug: str, name: str, firmware: str | None,
               **fields: Any) -> Message:
        """One entity's discovery config (retained): `key` is its topic-safe id, `slug` its readable entity id."""
        object_id = entity_slug(f"camserver_{camera}_{slug}")
        config = {"name": name, "unique_id": f"camserver_{topic_key(camera)}_{key}",
                  "default_entity_id": f"{platform}.{object_id}", "object_id": object_id,
                  "availability_topic": self.availability, "device": self.device(camera, firmware),
                  "origin": {"name": "camserver", "sw_version": __version__}, **fields}
        return (f"{self.discovery}/{platform}/camserver_{topic_key(camera)}/{key}/config", json.dumps(config), True)

    def label_entities(self, camera: str, label: str, firmware: str | None) -> list[Message]:
        """Occupancy, count and latest snapshot of one label of a camera."""
        key, state = topic_key(label), self.state_topic(camera, label)
        label = label[:MAX_LABEL_CHARS]
        return [
            self.entity(camera, "binary_sensor", f"{key}_occupancy", f"{label}_occupancy", f"{label} occupancy",
                        firmware, device_class="occupancy", state_topic=state,
                        value_template="{{ 'ON' if value | int > 0 else 'OFF' }}"),
            self.entity(camera, "sensor", f"{key}_count", f"{label}_count", f"{label} count", firmware,
                        state_topic=state, state_class="measurement", unit_of_measurement="objects"),
            self.entity(camera, "image", f"{key}_snapshot", f"{label}_snapshot", f"{label} snapshot", firmware,
                        image_topic=f"{state}/snapshot", content_type="image/jpeg"),
        ]

    def camera_entities(self, camera: str, motion: bool, labels: Iterable[str], firmware: str | None) -> list[Message]:
        """Every entity of a camera: connectivity, motion (when its motion detection is on), its labels'."""
        state = self.state_topic(camera)
        messages = [self.entity(camera, "binary_sensor", "connectivity", "connectivity", "connected", firmware,
                                device_class="connectivity", state_topic=f"{state}/status", payload_on="online",
                                payload_off="offline")]
        # the mute (integrations/mute.py): ON holds the camera's notifications until turned back off
        messages.append(self.entity(camera, "switch", "mute", "mute", "mute notifications", firmware,
                                    state_topic=f"{state}/mute", command_topic=f"{state}/mute/set", payload_on="ON",
                                    payload_off="OFF", icon="mdi:bell-off"))
        if motion:
            messages.append(self.entity(camera, "binary_sensor", "motion", "motion", "motion", firmware,
                                        device_class="motion", state_topic=f"{state}/motion", payload_on="ON",
                                        payload_off="OFF"))
        for label in sorted(labels):
            messages += self.label_entities(camera, label, firmware)
        return messages

    def ours(self, topic: str, payload: Any) -> tuple[str, str] | None:
        """(camera key, entity key) of a retained discovery config of this server's topic prefix; None for others'."""
        parts = topic[len(self.discovery) + 1:].split("/")
        if len(parts) != 4 or not parts[1].startswith("camserver_") or not payload:
            return None  # another integration's, or a config already cleared
        try:
            config = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(config, dict) or config.get("availability_topic") != self.availability:
            return None  # another camserver's (another topic prefix)
        return parts[1][len("camserver_"):], parts[2]


class MuteControl(Protocol):
    """What the mute switch asks of the mutes (integrations/mute.py's MuteBoard)."""

    listeners: list[Callable[[str], None]]  # told a camera id, or "*" for the mute of all

    def muted(self, camera: str) -> bool:
        """Whether the camera's notifications are held now."""
        ...

    def switch(self, camera: str, on: bool) -> Awaitable[None]:
        """ON: mute the camera until turned back off; OFF: unmute it."""
        ...


class MuteSwitch:
    """The MqttPublisher's part for each camera's mute switch: its retained state and its command topic."""

    # the publisher's, which this part uses
    cameras: dict[str, bool]
    ha: HomeAssistantDiscovery
    prefix: str
    mute: MuteControl | None
    _problems: ThrottledLog
    if TYPE_CHECKING:
        @property
        def enabled(self) -> bool: ...
        def _put(self, message: Message) -> None: ...
        def _camera_of_key(self, camera_key: str) -> str | None: ...

    def _mute_state(self, camera: str) -> Message:
        muted = self.mute is not None and self.mute.muted(camera)
        return (f"{self.ha.state_topic(camera)}/mute", "ON" if muted else "OFF", True)

    def camera_mute(self, target: str) -> None:
        """A mute changed (a camera id, or "*": the mute of all, so every camera's): the switches' states."""
        if self.enabled:
            for camera in list(self.cameras) if target == "*" else [target] if target in self.cameras else []:
                self._put(self._mute_state(camera))

    async def _mute_command(self, topic: str, payload: Any, retained: bool) -> None:
        """`<camera>/mute/set`: ON mutes the camera until turned back off, OFF unmutes it.

        A retained command is ignored: kept at the broker, it would mute again at every reconnect.
        """
        camera = self._camera_of_key(topic[len(self.prefix) + 1:].split("/")[0])
        text = payload.decode("utf-8", "replace") if isinstance(payload, (bytes, bytearray)) else str(payload)
        command = text.strip().upper()
        if camera is not None and command in ("ON", "OFF") and not retained and self.mute is not None:
            await self.mute.switch(camera, command == "ON")
            return
        self._problems.warning("mute command", "MQTT: ignored %s%s on %s (a known camera's mute/set takes ON or "
                               "OFF, not retained)", "retained " * retained, printable(command[:32]), printable(topic))
        if camera is not None:  # its state again: Home Assistant may show the switch flipped
            self.camera_mute(camera)
