"""Where results go: [storage], [record], [[webhooks]], [[notify]], [mute], [mqtt], and [log]."""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, model_validator

from .checks import (LOWER, Allowed, AnyText, Bool, EventTypes, Float, Headers, Int, LogLevel, OptionalCameraIds,
                     OptionalLabels, Table, Text, Topic, Url, ZoneNames, checked, problem)


class StorageConfig(Table):
    """Where event history and snapshots live, and for how long."""

    dir: Text = Field("camserver-data", description="Everything camserver keeps: database, snapshots, recordings, "
                      "exports, firmware images.")
    retain_days: Float = Field(10.0, ge=0.0, le=36500, description="Ended events older than this (in keep-time, "
                               "which clock steps do not move) are removed.")
    max_mb: Float = Field(1024.0, ge=1.0, le=10_000_000, description="The size of it all (exports and firmware images "
                          "included); past it the oldest exports go first, then the oldest recordings, then the "
                          "oldest events.")
    # free space kept on storage.dir's disk (at most 10% of it); 0: none
    min_free_mb: Float = Field(1024.0, ge=0.0, le=10_000_000, description="Free space kept on the disk of storage.dir "
                               "whatever else fills it (checked every second): below it camserver's own oldest go, "
                               "never the database. Capped at 10% of the disk; 0: no floor.")


RecordMode = Literal["off", "events", "motion", "continuous"]
RECORD_MODES: tuple[str, ...] = typing.get_args(RecordMode)
X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]
X264_PRESETS: tuple[str, ...] = typing.get_args(X264Preset)
# camserver's tuning on top of the preset (veryfast and slower; ultrafast and superfast are left as they are),
# for fixed cameras on small CPUs: see camserver/record/encoder.py and bench/record.py
DEFAULT_X264_PARAMS = "subme=1:me=dia:weightp=0:rc-lookahead=5:partitions=none"


def _x264_params(v: Any) -> str | None:
    if not isinstance(v, str) or not re.match(r"^[A-Za-z0-9_.,=:+-]*$", v):
        return 'must be x264 options as "key=value:key=value" (letters, digits, _ . , = : + -)'
    return None


class RecordConfig(Table):
    """Recording: event clips with pre/post capture, or continuous/motion segments, as H.264 MP4."""

    mode: Annotated[RecordMode, LOWER] = Field("events", description="off, events (a clip per event), motion "
                                                                     "(segments where motion was on), continuous.")
    pre_capture_s: Float = Field(5.0, ge=0.0, le=60, description="An event's clip starts this long before the event.")
    post_capture_s: Float = Field(5.0, ge=0.0, le=600, description="An event's clip ends this long after the event.")
    segment_s: Float = Field(10.0, ge=2, le=3600, description="Continuous and motion recording: seconds per file.")
    retain_days: Float = Field(3.0, ge=0.0, le=36500, description="Continuous and motion recording: days a segment "
                               "is kept.")
    preset: Annotated[X264Preset, LOWER] = Field("veryfast", description="The x264 preset.")
    crf: Int = Field(28, ge=0, le=51, description="The x264 constant rate factor (lower: better and larger).")
    x264_params: Annotated[str, checked(_x264_params)] = Field(
        DEFAULT_X264_PARAMS, description="x264 options over the preset; the default is camserver's tuning for fixed "
                                         "cameras on small CPUs (left out with ultrafast and superfast).")
    buffer_mb: Float = Field(32.0, ge=1.0, le=4096, description="The pre-capture ring of one camera, at most.")


class WebhookConfig(Table):
    """One [[webhooks]] entry: where event changes are POSTed as JSON."""

    url: Url = Field(description="Where to POST (required).")
    types: EventTypes = Field(("new", "end"), description="Which changes: new, update, end.")
    cameras: OptionalCameraIds = Field((), description="Only these cameras; `[]` = every camera.")
    labels: OptionalLabels = Field((), description="Only these labels; `[]` = every label.")
    headers: Headers = Field((), json_schema_extra={"default": {}}, description="Extra request headers, e.g. a token.")
    follow_redirects: Bool = Field(False, description="`true`: follow a redirect that stays on the same origin.")

    @model_validator(mode="after")
    def _one_credential(self) -> WebhookConfig:
        if urlsplit(self.url).username is not None and any(k.lower() == "authorization" for k, _ in self.headers):
            raise problem("conflicts with the user:password in url; keep one of them", ".headers", "Authorization")
        return self


APPRISE_URLS = 'a non-empty list of Apprise URLs, e.g. ["ntfys://ntfy.sh/my-topic"]'


def _apprise_urls(urls: Any) -> Any:
    """[[notify]] urls; a bad URL is shown redacted (it holds secrets), and never reaches an error unredacted."""
    from .apprise_urls import redact, url_problem  # imports Apprise: only when used

    if not isinstance(urls, (list, tuple)) or not urls or not all(isinstance(u, str) for u in urls):
        shown = ([redact(u) if isinstance(u, str) else type(u).__name__ for u in urls] if isinstance(urls, list)
                 else redact(urls) if isinstance(urls, str) else type(urls).__name__)
        raise problem("must be " + APPRISE_URLS, shown=shown)
    for n, url in enumerate(urls):
        if complaint := url_problem(url):
            raise problem(f"URL {n + 1}: {complaint}", shown=redact(url))
    return tuple(urls)


NotifyAttach = Literal["snapshot", "crop", "none"]
NOTIFY_ATTACH: tuple[str, ...] = typing.get_args(NotifyAttach)


class NotifyConfig(Table):
    """One [[notify]] table: Apprise URLs and which events reach them. The URLs hold secrets."""

    # repr=False keeps them out of any printed config
    urls: Annotated[tuple[str, ...], BeforeValidator(_apprise_urls), Allowed(APPRISE_URLS)] = Field(
        repr=False, description="Apprise URLs (they hold secrets: shown redacted everywhere), e.g. "
                                "`ntfys://ntfy.sh/my-topic`.")
    cameras: OptionalCameraIds = Field((), description="Only these cameras; `[]` = every camera.")
    labels: OptionalLabels = Field((), description="Only these labels; `[]` = every label that makes events.")
    zones: ZoneNames = Field((), description="Non-empty: only objects that entered one of these `[[events.zones]]`.")
    cooldown_s: Float = Field(60.0, ge=0.0, le=86400, description="Per camera and label: at most one notification in "
                              "this window.")
    attach: Annotated[NotifyAttach, LOWER] = Field("snapshot", description="snapshot (the best frame with its box), "
                                                                           "crop (around the object) or none.")
    clip: Bool = Field(False, description="`true`: when the event ends, a second message with its clip.")


MuteHold = Literal["notify", "webhooks"]
MUTE_HOLDS: tuple[str, ...] = typing.get_args(MuteHold)


def _mute_holds(v: Any) -> str | None:
    if not isinstance(v, (list, tuple)) or not all(h in MUTE_HOLDS for h in v):
        return f"must be a list of {', '.join(MUTE_HOLDS)} (what a mute holds back); [] = nothing"
    return None


class MuteConfig(Table):
    """What muting a camera (from the page, the API or Home Assistant) holds back; events are still recorded."""

    holds: Annotated[tuple[MuteHold, ...], checked(_mute_holds)] = Field(
        ("notify",), description="What a mute (page, `POST /api/mute`, Home Assistant's switch) holds back: `notify` "
                                 "(`[[notify]]` messages), `webhooks`; events are still recorded and MQTT still "
                                 "reports them.")


class MqttConfig(Table):
    """MQTT: event states for Home Assistant, Node-RED and friends. Off while host is empty."""

    host: AnyText = Field("", description="The broker; `\"\"` = MQTT off.")
    port: Int = Field(1883, ge=1, le=65535, description="The broker's port.")
    username: AnyText = Field("", description="User name at the broker; `\"\"` = none.")
    password: AnyText = Field("", description="Password at the broker.", repr=False)
    client_id: AnyText = Field("", description="MQTT client id; `\"\"` = `camserver-<hostname>`. Two instances on one "
                               "host need their own.")
    topic_prefix: Topic = Field("camserver", description="Every topic starts with this.")
    tls: Bool = Field(False, description="Connect with TLS.")
    ca_file: AnyText = Field("", description="CA certificates for TLS; `\"\"` = the system's.")
    homeassistant: Bool = Field(True, description="Publish Home Assistant discovery configs.")
    discovery_prefix: Topic = Field("homeassistant", description="Home Assistant's discovery prefix.")


class LogConfig(Table):
    """Logging."""

    level: Annotated[LogLevel, LOWER] = Field("info", description="debug, info, warning, error.")
