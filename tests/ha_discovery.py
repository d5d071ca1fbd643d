"""What current Home Assistant accepts in an MQTT discovery config, for the tests that check ours.

Written from Home Assistant's MQTT documentation and its discovery schemas (homeassistant/components/mqtt:
schemas.py MQTT_ENTITY_COMMON_SCHEMA, config.py MQTT_BASE_SCHEMA / MQTT_RO_SCHEMA, and binary_sensor.py,
sensor.py, image.py, camera.py, switch.py), as of 2025.10 to 2026.2: `default_entity_id` is new in 2025.10, `object_id`
is deprecated then and ignored from 2026.4. Home Assistant drops keys it does not know (REMOVE_EXTRA), so a
misspelt key fails silently there: this check makes it fail here. Only full key names: camserver sends no
abbreviations.
"""

from __future__ import annotations

import json
import re

# Home Assistant's discovery topic matcher (discovery.py TOPIC_MATCHER), after "<discovery_prefix>/"
TOPIC_MATCHER = re.compile(r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config")
# homeassistant.core.valid_entity_id
VALID_ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")

AVAILABILITY = {"availability", "availability_mode", "availability_template", "availability_topic",
                "payload_available", "payload_not_available"}
BASE = {"qos", "encoding", "group"}  # MQTT_BASE_SCHEMA
COMMON = AVAILABILITY | BASE | {
    "device", "origin", "enabled_by_default", "entity_category", "entity_picture", "icon",
    "json_attributes_topic", "json_attributes_template", "object_id", "default_entity_id", "unique_id",
    "name", "platform", "~",
}
PLATFORMS = {
    "binary_sensor": COMMON | {"state_topic", "value_template", "device_class", "expire_after", "force_update",
                               "off_delay", "payload_off", "payload_on"},
    "sensor": COMMON | {"state_topic", "value_template", "device_class", "expire_after", "force_update",
                        "last_reset_value_template", "options", "state_class", "suggested_display_precision",
                        "unit_of_measurement"},
    "image": COMMON | {"content_type", "image_encoding", "image_topic", "url_template", "url_topic"},
    "camera": COMMON | {"topic", "image_encoding"},
    "switch": COMMON | {"command_topic", "command_template", "state_topic", "value_template", "device_class",
                        "optimistic", "payload_off", "payload_on", "retain", "state_off", "state_on"},
}
REQUIRED = {"binary_sensor": {"state_topic"}, "sensor": {"state_topic"}, "image": {"image_topic"},
            "camera": {"topic"}, "switch": {"command_topic"}}
DEVICE = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id",
          "name", "serial_number", "suggested_area", "sw_version", "via_device"}
ORIGIN = {"name", "sw_version", "support_url"}
BINARY_SENSOR_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas", "heat",
    "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power", "presence", "problem",
    "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
TOPIC_KEYS = ("state_topic", "command_topic", "image_topic", "topic", "availability_topic", "json_attributes_topic", "url_topic")


def valid_publish_topic(topic: str) -> bool:
    """An MQTT topic name a client may publish to (MQTT 3.1.1 section 4.7: no wildcards, no NUL, <= 65535 bytes)."""
    raw = topic.encode("utf-8")
    return 0 < len(raw) <= 65535 and "#" not in topic and "+" not in topic and "\0" not in topic


def check_config(topic: str, payload: bytes | str, discovery_prefix: str = "homeassistant") -> dict:
    """The parsed config of a retained discovery message; AssertionError names what HA would refuse or drop."""
    assert topic.startswith(discovery_prefix + "/"), topic
    match = TOPIC_MATCHER.fullmatch(topic[len(discovery_prefix) + 1:])
    assert match is not None, f"Home Assistant ignores the discovery topic {topic!r}"
    platform = match["component"]
    assert platform in PLATFORMS, f"{topic}: platform {platform} is not checked here"
    config = json.loads(payload)
    assert isinstance(config, dict), topic
    unknown = set(config) - PLATFORMS[platform]
    assert not unknown, f"{topic}: keys Home Assistant does not know for {platform}: {sorted(unknown)}"
    missing = REQUIRED[platform] - set(config)
    assert not missing, f"{topic}: required keys missing: {sorted(missing)}"
    for key in TOPIC_KEYS:
        if key in config:
            assert isinstance(config[key], str) and valid_publish_topic(config[key]), f"{topic}: {key} {config[key]!r}"
    device = config.get("device", {})
    assert set(device) <= DEVICE, f"{topic}: unknown device keys {sorted(set(device) - DEVICE)}"
    assert device.get("identifiers"), f"{topic}: a device needs identifiers"
    assert all(isinstance(v, str) for k, v in device.items() if k not in ("identifiers", "connections")), device
    if "configuration_url" in device:
        assert re.match(r"https?://", device["configuration_url"]), device["configuration_url"]
    if "origin" in config:
        assert set(config["origin"]) <= ORIGIN and "name" in config["origin"], config["origin"]
    assert isinstance(config.get("unique_id"), str) and config["unique_id"], f"{topic}: no unique_id"
    entity_id = config.get("default_entity_id")
    assert isinstance(entity_id, str) and VALID_ENTITY_ID.match(entity_id), f"{topic}: default_entity_id {entity_id!r}"
    assert entity_id.split(".", 1)[0] == platform, f"{topic}: default_entity_id {entity_id} is not a {platform}"
    if "object_id" in config:  # for Home Assistant before 2025.10: the same entity id
        assert config["object_id"] == entity_id.split(".", 1)[1], config
    if platform == "binary_sensor" and "device_class" in config:
        assert config["device_class"] in BINARY_SENSOR_CLASSES, config["device_class"]
    if "state_class" in config:
        assert config["state_class"] in STATE_CLASSES, config["state_class"]
    if isinstance(config.get("name"), str):
        assert not config["name"].startswith(device.get("name", "\0")), "HA strips a device name prefix and warns"
    return config
