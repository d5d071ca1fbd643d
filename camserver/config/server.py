"""The server's own tables: [ingest] (cameras connect), [http] (viewers connect) and [detect]."""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any, Literal, Mapping

from pydantic import BeforeValidator, Field, Strict, WithJsonSchema, model_validator

from ..passwords import hash_problem
from .checks import LOWER, _url, Allowed, Bool, CameraId, Float, Int, Table, Text, Token, checked, matching, problem

Backend = Literal["auto", "torch", "openvino", "onnx", "triton"]
Precision = Literal["auto", "f32", "bf16", "fp16", "int8"]  # detect.precision, backend openvino
BACKENDS: tuple[str, ...] = typing.get_args(Backend)
TRITON_URL_RE = re.compile(r"^(grpcs?|https?)://[^\s/,]+/?$")
TRITON_MODEL_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda|cuda:\d+|\d+)$")  # what torch and ultralytics take for one device
HOST_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")  # one DNS label, as mDNS names it


class IngestConfig(Table):
    """Camera side: the WebSocket listener."""

    host: Text = Field("0.0.0.0", description="Address the camera WebSocket listener binds; `0.0.0.0` is every interface.")
    port: Int = Field(3001, ge=0, le=65535, description="Camera listener port; cameras connect to `ws://HOST:PORT/ws/<camera_id>`. "
                      "0 = any free port.")
    max_frame_bytes: Int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest frame (one binary "
                                 "message) in bytes; a larger one closes the camera with 1009.")
    max_width: Int = Field(2592, ge=16, le=16384, description="Largest frame width, read from the JPEG header before "
                           "any decode.")
    max_height: Int = Field(1944, ge=16, le=16384, description="Largest frame height, read from the JPEG header before "
                            "any decode.")
    max_cameras: Int = Field(32, ge=1, le=1024, description="Camera ids kept; when full, the oldest offline unwatched "
                             "one is forgotten, else the new camera's handshake gets 503.")
    default_camera_id: CameraId = Field("default", description="Id of a camera on plain `/ws` (the tutorial firmware's path).")
    token: Token = Field("", description="Camera token (8+ characters), as `Authorization: Bearer` or `?token=`; `\"\"` = none.")
    handshake_timeout_s: Float = Field(10.0, ge=0.1, le=300, description="Seconds a client has to complete the "
                                       "WebSocket handshake.")
    ping_interval_s: Float = Field(20.0, ge=0.01, le=3600, description="Seconds between keepalive pings.")
    ping_timeout_s: Float = Field(20.0, ge=0.01, le=3600, description="A camera not answering a ping within this many "
                                  "seconds is closed with 1011.")
    max_bad_frames: Int = Field(50, ge=1, le=100000, description="Rejected frames in a row before the camera is closed "
                                "with 1008.")


Role = Literal["viewer", "admin"]
ROLES: tuple[str, ...] = typing.get_args(Role)
USERS_HELP = 'must be a table of user = "password" or user = { password = "...", role = "admin" }'


class UserConfig(Table):
    """One http.users account: basic auth and the page's login; a viewer may watch, an admin may also change things."""

    name: str = Field(exclude=True)
    password: Text = Field(description="The user's password (non-empty).", repr=False)
    role: Role = Field("viewer", description="`viewer` may watch; `admin` may also change things.")


def _users(entries: Any) -> tuple[UserConfig, ...]:
    """http.users: `alice = "password"` (a viewer) or `alice = { password = "...", role = "admin" }`."""
    if isinstance(entries, tuple):
        return entries  # built already (a model_copy)
    if not isinstance(entries, Mapping):
        raise problem(USERS_HELP, shown=type(entries).__name__)
    users = []
    for name, entry in entries.items():
        key = f".{name}"
        if not name or ":" in name:  # basic auth splits user:password at the first colon
            raise problem("user names must be non-empty and without ':'", key, name)
        password: Any
        if isinstance(entry, str):
            password, role = entry, "viewer"
        elif isinstance(entry, Mapping):
            for extra in set(entry) - {"password", "role"}:
                raise problem("unknown key; allowed: password, role", f"{key}.{extra}", entry[extra])
            password, role = entry.get("password"), entry.get("role", "viewer")
            if role not in ROLES:
                raise problem(f"must be one of {', '.join(ROLES)}", f"{key}.role", role)
        else:
            raise problem(USERS_HELP, key, type(entry).__name__)
        if not isinstance(password, str) or not password:
            raise problem("must be a non-empty string (the password)",
                          f"{key}.password" if isinstance(entry, Mapping) else key, "...")
        if (bad := hash_problem(password)) is not None:
            raise problem(bad, f"{key}.password" if isinstance(entry, Mapping) else key, "...")
        users.append(UserConfig(name=name, password=password, role=typing.cast(Role, role)))
    return tuple(sorted(users, key=lambda u: u.name))


USERS_SCHEMA = {"type": "object", "additionalProperties": {"anyOf": [
    {"type": "string", "minLength": 1},
    {"type": "object", "additionalProperties": False, "required": ["password"],
     "properties": {"password": {"type": "string", "minLength": 1}, "role": {"enum": list(ROLES)}}}]}}


class HttpConfig(Table):
    """Viewer side: the aiohttp app serving MJPEG, snapshots and JSON."""

    host: Text = Field("0.0.0.0", description="Address the viewer listener (page, MJPEG, snapshots, API) binds.")
    port: Int = Field(8080, ge=0, le=65535, description="Viewer port: `http://HOST:PORT/`. 0 = any free port.")
    viewer_write_timeout_s: Float = Field(10.0, ge=0.1, le=600, description="A viewer that has not taken a frame this "
                                          "long is dropped and its buffers freed.")
    placeholder_interval_s: Float = Field(1.0, ge=0.1, le=60, description="Seconds between repeats of the placeholder "
                                          "picture while a camera is away.")
    max_viewers: Int = Field(200, ge=1, le=100000, description="Open MJPEG streams in all; one more gets 503 with "
                             "`Retry-After`.")
    max_viewers_per_camera: Int = Field(50, ge=1, le=100000, description="Open MJPEG streams of one camera; one more "
                                        "gets 503 with `Retry-After`.")
    max_connections: Int = Field(512, ge=16, le=1_000_000, description="Open HTTP connections of any kind; one more "
                                 "gets 503 and is closed (lowered to fit the file descriptor limit, leaving room for "
                                 "the cameras).")
    request_timeout_s: Float = Field(10.0, ge=1.0, le=300, description="Seconds to send a request's headers; also how "
                                     "long an idle keep-alive connection stays.")
    body_timeout_s: Float = Field(30.0, ge=1.0, le=3600, description="Seconds a client may take to send a request's "
                                  "body, from the request's start; then HTTP 408 and the connection is closed.")
    unauthenticated_share: Float = Field(0.5, ge=0.05, le=1.0, description="Share of http.max_connections that "
                                         "connections with no valid credential and no successful answer yet may hold; "
                                         "over it a new one evicts the oldest of them that still waits for headers or "
                                         "a body.")
    event_stream_max_s: Float = Field(600.0, ge=1.0, le=86400, description="An event stream ends after this many "
                                      "seconds; browsers reconnect at once and resume (Last-Event-ID).")
    token: Token = Field("", description="Viewer token (8+ characters); `\"\"` = open.")
    admin_token: Token = Field("", description="Admin token (8+ characters, not the viewer token): the write "
                               "permission, as `Authorization: Bearer` only. `\"\"` and no admin user = whoever may "
                               "watch may write.")
    users: Annotated[tuple[UserConfig, ...], BeforeValidator(_users), WithJsonSchema(USERS_SCHEMA)] = Field(
        (), json_schema_extra={"default": {}},
        description="Accounts for basic auth and the page's login: `alice = \"HASH\"` (a viewer) or "
                        "`bob = { password = \"HASH\", role = \"admin\" }`, HASH being the line "
                        "`python -m camserver --hash-password` prints (pbkdf2_sha256$...); a password in plain "
                        "text still works and is warned about at start.")
    public_url: Annotated[str, checked(lambda v: None if v == "" else _url(v))] = Field(
        "", description="The server's address as phones reach it, for links in notifications; `\"\"` = no link.")
    mdns: Bool = Field(True, description="Advertise the server over mDNS as `<mdns_name>.local` (`_http._tcp` and "
                       "`_camserver._tcp`).")
    mdns_name: Annotated[str, Strict(), matching(HOST_LABEL_RE), Allowed(
        "a host name: letters, digits and '-', 1 to 63 characters, not starting or ending with '-'")] = Field(
        "camserver", description="The mDNS host name, without `.local`.")

    @model_validator(mode="after")
    def _tokens_differ(self) -> HttpConfig:
        if self.admin_token and self.admin_token == self.token:
            # the same secret for both would make every viewer an admin
            raise problem("must differ from http.token", ".admin_token", "(hidden)")
        return self

    @property
    def passwords(self) -> dict[str, str]:
        """Every user's password by name."""
        return {u.name: u.password for u in self.users}

    @property
    def admins(self) -> frozenset[str]:
        """The names of the users with the admin role."""
        return frozenset(u.name for u in self.users if u.role == "admin")


def _triton_urls(v: Any) -> str | None:
    urls = [u.strip() for u in v.split(",") if u.strip()] if isinstance(v, str) else v
    if not isinstance(urls, (list, tuple)) or not all(isinstance(u, str) and TRITON_URL_RE.match(u) for u in urls):
        return "must be grpc://HOST:PORT or http://HOST:PORT (grpcs://, https:// for TLS), or a list of them"
    return None


def _url_list(v: Any) -> tuple[str, ...]:
    """"grpc://a:8001, grpc://b:8001" as well as a list."""
    return tuple(u.strip() for u in v.split(",") if u.strip()) if isinstance(v, str) else tuple(v)


TRITON_URLS_SCHEMA = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


class DetectConfig(Table):
    """The detector: which model, how it runs, how results are encoded."""

    model: Text = Field("yolo11n.pt", description="`yolo11n.pt`, any path ultralytics accepts (`.pt`, `.yaml`, "
                        "`.onnx`, OpenVINO folder, TensorRT engine, Triton URL), or `none` to pass frames through.")
    device: Annotated[str, Strict(), matching(DEVICE_RE),
                      Allowed("auto, cpu, mps, cuda, cuda:N or N (a GPU's index)")] = Field(
        "auto", description="Where the model runs: auto, cpu, mps, cuda, cuda:N, or a GPU's index N.")
    conf: Float = Field(0.25, ge=0.0, le=1.0, description="Confidence threshold, as in ultralytics `predict()`.")
    iou: Float = Field(0.45, ge=0.0, le=1.0, description="NMS IoU threshold, as in ultralytics `predict()`.")
    imgsz: Int = Field(640, ge=32, le=4096, description="Inference size in pixels, as in ultralytics `predict()`.")
    workers: Int = Field(1, ge=1, le=16, description="Detector threads, one model instance each.")
    backend: Annotated[Backend, LOWER] = Field("auto", description="How the model runs: auto, torch, openvino, onnx, "
                                                                   "or triton (the shared inference service).")
    max_batch: Int = Field(0, ge=0, le=256, description="Frames of different cameras per inference; 0 = per backend: "
                           "32 on CUDA, 2 on CPU, 8 per request with triton.")
    cache_dir: Annotated[str, Strict(), Allowed("a folder path (a string)")] = Field(
        "", description="Where exported models are kept; `\"\"` = `~/.cache/camserver`.")
    precision: Precision = Field("auto", description="Backend openvino: auto (measure f32, bf16, fp16, int8 on this "
                                 "CPU once, each in one stream, two streams and batch 2, and keep the fastest that "
                                 "passes the accuracy gate: agreement with f32 >= 0.97, boxes of one class matched at "
                                 "IoU >= 0.5, mean score difference <= 0.05), or one of f32, bf16, fp16, int8.")
    threads: Int = Field(0, ge=0, le=256, description="Backend openvino: inference threads per worker; 0 = the "
                         "runtime's choice (every core).")
    jpeg_quality: Int = Field(80, ge=10, le=100, description="JPEG quality of the annotated frames.")
    stall_timeout_s: Float = Field(10.0, ge=0.1, le=600, description="A detector call longer than this counts as "
                                   "hung and its worker is replaced.")
    # backend "triton": the shared inference service (python -m camserver.infer)
    url: Annotated[tuple[str, ...], checked(_triton_urls, _url_list), WithJsonSchema(TRITON_URLS_SCHEMA)] = Field(
        (), description="Backend triton: `grpc://HOST:8001` or `http://HOST:8000`, a list, or comma-separated; "
                        "tried in order.")
    triton_model: Annotated[str, Strict(), matching(TRITON_MODEL_RE),
                            Allowed("letters, digits, '.', '_' or '-'")] = Field(
        "detector", description="Backend triton: the model name (`camserver-infer --model-name`).")
    timeout_s: Float = Field(3.0, ge=0.1, le=120, description="Backend triton: one request's limit; past it the "
                             "service counts as lost.")
    triton_inflight: Int = Field(4, ge=1, le=64, description="Backend triton: batches sent and not yet answered, at most.")
    triton_token: Token = Field("", description="Backend triton: the service's access token (camserver-infer "
                                "--token-file or $CAMSERVER_INFER_TOKEN), sent with every call; \"\" = none. At least "
                                "8 characters.")

    @model_validator(mode="after")
    def _triton_needs_a_url(self) -> DetectConfig:
        if self.backend == "triton" and not self.url:
            raise problem("must be set (e.g. grpc://HOST:8001) when detect.backend is triton", ".url", "")
        return self
