"""The MQTT reference: the topics and Home Assistant entities, from what camserver's MQTT publisher itself
queues for one camera with one label (no broker needed: its outbox is read instead of sent)."""

from __future__ import annotations

import json
from typing import Any

CAMERA, LABEL = "<camera>", "<label>"


def _messages(motion: bool) -> list[tuple[str, Any, bool]]:
    """What the publisher queues for a camera that connects, moves and has one event, then on a reconnect."""
    from ..config import MqttConfig
    from ..events.rules import Change
    from ..integrations.mqtt import MqttPublisher

    mqtt = MqttPublisher(MqttConfig(host="broker.lan"), (LABEL,), motion=lambda camera: motion)
    mqtt.camera_online(CAMERA, True)
    if motion:
        mqtt.camera_motion(CAMERA, True)
    event = {"id": "<event id>", "camera": CAMERA, "label": LABEL, "announced": True}
    mqtt.on_change(Change("new", None, event, snapshot=b"\xff\xd8<JPEG>\xff\xd9"))
    messages = mqtt._everything() + list(mqtt.outbox.items)  # what a (re)connect sends first, then the changes
    return [(_named(topic), payload if isinstance(payload, bytes) else _named(payload), retain)
            for topic, payload, retain in messages]


def _named(text: str) -> str:
    """The placeholders back in place of their topic keys (`<camera>` is no safe topic level, so it is escaped)."""
    from ..integrations.homeassistant import topic_key

    return text.replace(topic_key(CAMERA), CAMERA).replace(topic_key(LABEL), LABEL)


def _payload(topic: str, payload: Any) -> str:
    if isinstance(payload, bytes):
        return "JPEG bytes"
    if topic.endswith("/events"):
        return '`{"type", "before", "after"}` JSON (an event\'s change)'
    return f"`{payload}`"


def mqtt_page() -> str:
    """The MQTT and Home Assistant reference page."""
    from . import cell

    plain, moving = _messages(False), _messages(True)
    prefix = "camserver"
    out = ["# MQTT topics and Home Assistant entities", "",
           f"With `mqtt.host` set, camserver publishes under `mqtt.topic_prefix` (`{prefix}`); "
           "`<camera>` is a camera id and `<label>` each label of `events.labels`.", "",
           "## Topics", "", "| topic | payload (example) | retained | when |", "| --- | --- | --- | --- |"]
    topics: dict[str, tuple[str, bool]] = {}
    plain_topics = {topic for topic, _, _ in plain}
    for topic, payload, retain in moving:
        topic = topic.replace("<prefix>", prefix)
        if topic.startswith("homeassistant/") or topic in topics:
            continue
        topics[topic] = (_payload(topic, payload), retain)
    for topic, (payload, retain) in topics.items():
        if topic == f"{prefix}/available":
            payload += " / `offline` (the last will)"
        elif topic.endswith("/status"):
            payload += " / `offline`"
        elif topic.endswith("/motion"):
            payload += " / `OFF`"
        elif topic.endswith("/mute"):
            payload += " / `ON` (notifications held; Home Assistant's switch sends `ON` / `OFF` to `.../mute/set`)"
        when = "while the camera's motion detection is on" if topic not in plain_topics and \
            topic.replace(prefix, "<prefix>") not in plain_topics else ""
        out.append(f"| `{topic}` | {payload} | {'yes' if retain else 'no'} | {when} |")
    out += ["", "## Home Assistant entities", "",
            "With `mqtt.homeassistant` on, each camera is a device `camserver <camera>` "
            "(identifier `camserver_<camera>`), and each entity's discovery config is retained under "
            "`mqtt.discovery_prefix` (`homeassistant`), with the availability topic "
            f"`{prefix}/available`:", "",
            "| entity | component | name | device class | state from | when |", "| --- | --- | --- | --- | --- | --- |"]
    plain_configs = {topic for topic, _, _ in plain if topic.startswith("homeassistant/")}
    shown = set()
    for topic, payload, _ in moving:
        if not topic.startswith("homeassistant/") or topic in shown:
            continue
        shown.add(topic)
        config = json.loads(payload)
        component = topic.split("/")[1]
        state = config.get("state_topic") or config.get("image_topic", "")
        if topic not in plain_configs:
            when = "while the camera's motion detection is on"
        elif LABEL in topic:
            when = "for each label in `events.labels`"
        else:
            when = "always"
        out.append(f"| `{config['unique_id']}` | {component} | {cell(config['name'])} | "
                   f"{config.get('device_class', '')} | `{state}` | {when} |")
    out += ["", "The discovery configs and current states are sent again on every reconnect and whenever Home "
            "Assistant announces `online` on `homeassistant/status`; entities the configuration no longer makes are "
            "cleared (an empty retained config). See the [Home Assistant guide](../guides/home-assistant.md)."]
    return "\n".join(out) + "\n"
