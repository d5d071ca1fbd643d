"""One line per configuration key: what it does. The docs' configuration reference is generated from
these with each key's type, default and allowed values read from the tables (tables.py); a test fails
when a key has no line here.

They live beside the tables, not in every field's metadata, so that adding a key touches one line in
tables.py and one here (and a move of the tables to another schema library can take them as they are).
"""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    # [ingest]
    "ingest.host": "Address the camera WebSocket listener binds; `0.0.0.0` is every interface.",
    "ingest.port": "Camera listener port; cameras connect to `ws://HOST:PORT/ws/<camera_id>`. 0 = any free port.",
    "ingest.max_frame_bytes": "Largest frame (one binary message) in bytes; a larger one closes the camera with 1009.",
    "ingest.max_width": "Largest frame width, read from the JPEG header before any decode.",
    "ingest.max_height": "Largest frame height, read from the JPEG header before any decode.",
    "ingest.max_cameras": "Camera ids kept; when full, the oldest offline unwatched one is forgotten, else the new "
                          "camera's handshake gets 503.",
    "ingest.default_camera_id": "Id of a camera on plain `/ws` (the tutorial firmware's path).",
    "ingest.token": "Camera token (8+ characters), as `Authorization: Bearer` or `?token=`; `\"\"` = none.",
    "ingest.handshake_timeout_s": "Seconds a client has to complete the WebSocket handshake.",
    "ingest.ping_interval_s": "Seconds between keepalive pings.",
    "ingest.ping_timeout_s": "A camera not answering a ping within this many seconds is closed with 1011.",
    "ingest.max_bad_frames": "Rejected frames in a row before the camera is closed with 1008.",
    # [http]
    "http.host": "Address the viewer listener (page, MJPEG, snapshots, API) binds.",
    "http.port": "Viewer port: `http://HOST:PORT/`. 0 = any free port.",
    "http.viewer_write_timeout_s": "A viewer that has not taken a frame this long is dropped and its buffers freed.",
    "http.placeholder_interval_s": "Seconds between repeats of the placeholder picture while a camera is away.",
    "http.max_viewers": "Open MJPEG streams in all; one more gets 503 with `Retry-After`.",
    "http.max_viewers_per_camera": "Open MJPEG streams of one camera; one more gets 503 with `Retry-After`.",
    "http.max_connections": "Open HTTP connections of any kind; one more gets 503 and is closed (lowered to fit "
                            "the file descriptor limit, leaving room for the cameras).",
    "http.request_timeout_s": "Seconds to send a request's headers; also how long an idle keep-alive connection stays.",
    "http.body_timeout_s": "Seconds a client may take to send a request's body, from the request's start; then HTTP 408 "
                           "and the connection is closed.",
    "http.unauthenticated_share": "Share of http.max_connections that connections with no valid credential and no "
                                  "successful answer yet may hold; over it a new one evicts the oldest of them that "
                                  "still waits for headers or a body.",
    "http.event_stream_max_s": "An event stream ends after this many seconds; browsers reconnect at once and resume "
                               "(Last-Event-ID).",
    "http.token": "Viewer token (8+ characters); `\"\"` = open.",
    "http.admin_token": "Admin token (8+ characters, not the viewer token): the write permission, as "
                        "`Authorization: Bearer` only. `\"\"` and no admin user = whoever may watch may write.",
    "http.users": "Accounts for basic auth and the page's login: `alice = \"password\"` (a viewer) or "
                  "`bob = { password = \"...\", role = \"admin\" }`.",
    "http.users.<name>.password": "The user's password (non-empty).",
    "http.users.<name>.role": "`viewer` may watch; `admin` may also change things.",
    "http.public_url": "The server's address as phones reach it, for links in notifications; `\"\"` = no link.",
    "http.mdns": "Advertise the server over mDNS as `<mdns_name>.local` (`_http._tcp` and `_camserver._tcp`).",
    "http.mdns_name": "The mDNS host name, without `.local`.",
    # [detect]
    "detect.model": "`yolo11n.pt`, any path ultralytics accepts (`.pt`, `.yaml`, `.onnx`, OpenVINO folder, "
                    "TensorRT engine, Triton URL), or `none` to pass frames through.",
    "detect.device": "Where the model runs: auto, cpu, mps, cuda, cuda:N, or a GPU's index N.",
    "detect.conf": "Confidence threshold, as in ultralytics `predict()`.",
    "detect.iou": "NMS IoU threshold, as in ultralytics `predict()`.",
    "detect.imgsz": "Inference size in pixels, as in ultralytics `predict()`.",
    "detect.workers": "Detector threads, one model instance each.",
    "detect.backend": "How the model runs: auto, torch, openvino, onnx, or triton (the shared inference service).",
    "detect.max_batch": "Frames of different cameras per inference; 0 = per backend: 32 on CUDA, 2 on CPU, "
                        "8 per request with triton.",
    "detect.cache_dir": "Where exported models are kept; `\"\"` = `~/.cache/camserver`.",
    "detect.precision": "Backend openvino: auto (measure f32, bf16, fp16, int8 on this CPU once and keep the "
                        "fastest that passes the accuracy gate), or one of f32, bf16, fp16, int8.",
    "detect.threads": "Backend openvino: inference threads per worker; 0 = the runtime's choice (every core).",
    "detect.jpeg_quality": "JPEG quality of the annotated frames.",
    "detect.stall_timeout_s": "A detector call longer than this counts as hung and its worker is replaced.",
    "detect.url": "Backend triton: `grpc://HOST:8001` or `http://HOST:8000`, a list, or comma-separated; "
                  "tried in order.",
    "detect.triton_model": "Backend triton: the model name (`camserver-infer --model-name`).",
    "detect.timeout_s": "Backend triton: one request's limit; past it the service counts as lost.",
    "detect.triton_inflight": "Backend triton: batches sent and not yet answered, at most.",
    "detect.triton_token": "Backend triton: the service's access token (camserver-infer --token-file or "
                           "$CAMSERVER_INFER_TOKEN), sent with every call; \"\" = none. At least 8 characters.",
    # [cameras]
    "cameras.ids": "Cameras known before they connect: their URLs exist and show a placeholder until then.",
    "cameras.<id>.motion": "Any `[motion]` key but `masks`, for that camera only.",
    "cameras.<id>.settings": "Board settings kept for that camera and sent on every hello; they win over what was "
                             "set from the page.",
    # [events]
    "events.enabled": "`false`: no tracking, no history, no `/api/events`.",
    "events.labels": "Labels that become events; `[\"*\"]` = every label.",
    "events.min_score": "Detections below this score are ignored.",
    "events.threshold": "An object becomes an event once the median of its recent scores reaches this.",
    "events.max_disappeared_s": "An event ends this long after its object was last seen.",
    "events.stationary_s": "An object that has not moved this long is stationary.",
    "events.update_interval_s": "Heartbeat: an update this often while nothing else changes.",
    "events.cooldown_s": "A new event of the same camera and label within this many seconds of the last one's end "
                         "is stored but not announced.",
    "events.zones": "`[[events.zones]]`: named polygons of a camera's frame; an object is in a zone when the bottom "
                    "centre of its box is.",
    "events.zones[].camera": "The camera the zone belongs to.",
    "events.zones[].name": "The zone's name (letters, digits, `-`, `_`; 1 to 32), unique per camera.",
    "events.zones[].points": "3 or more `[x, y]` pairs, relative to the frame (0 to 1).",
    "events.zones[].labels": "Labels the zone counts; left out = every label.",
    "events.filters": "`[events.filters.<label>]`: limits for one label's detections, applied before tracking.",
    "events.filters.<label>.min_area": "Smallest box: pixels, or a fraction of the frame when <= 1.",
    "events.filters.<label>.max_area": "Largest box: pixels, or a fraction of the frame when <= 1.",
    "events.filters.<label>.min_ratio": "Smallest width / height of the box.",
    "events.filters.<label>.max_ratio": "Largest width / height of the box.",
    "events.filters.<label>.min_score": "`events.min_score` for this label.",
    "events.filters.<label>.threshold": "`events.threshold` for this label.",
    "events.masks": "`[[events.masks]]`: object masks; a detection whose box's bottom centre lies inside is dropped.",
    "events.masks[].camera": "The camera the mask belongs to.",
    "events.masks[].points": "3 or more `[x, y]` pairs, relative to the frame (0 to 1).",
    "events.masks[].labels": "Labels the mask drops; left out = every label.",
    # [motion]
    "motion.enabled": "Detect only frames where something moves; `false`: every frame goes to the detector.",
    "motion.threshold": "Grey levels a pixel must differ from the background to count as changed.",
    "motion.contour_area": "Smallest moving area, in pixels of the 100-row picture.",
    "motion.improve_contrast": "Stretch each frame's contrast before comparing.",
    "motion.lightning_threshold": "A change over this share of the frame resets the background instead of being motion.",
    "motion.recheck_s": "Seconds between detections of a camera without motion (stationary objects, slow changes).",
    "motion.mqtt_off_delay_s": "MQTT motion turns `OFF` this long after the last motion.",
    "motion.masks": "`[[motion.masks]]`: motion inside is ignored (a tree, a timestamp overlay).",
    "motion.masks[].camera": "The camera the mask belongs to.",
    "motion.masks[].points": "3 or more `[x, y]` pairs, relative to the frame (0 to 1).",
    # [storage]
    "storage.dir": "Everything camserver keeps: database, snapshots, recordings, exports, firmware images.",
    "storage.retain_days": "Ended events older than this (in keep-time, which clock steps do not move) are removed.",
    "storage.max_mb": "The size of it all (exports and firmware images included); past it the oldest exports go "
                      "first, then the oldest recordings, then the oldest events.",
    "storage.min_free_mb": "Free space kept on the disk of storage.dir whatever else fills it (checked every second): "
                           "below it camserver's own oldest go, never the database. Capped at 10% of the disk; 0: no floor.",
    # [record]
    "record.mode": "off, events (a clip per event), motion (segments where motion was on), continuous.",
    "record.pre_capture_s": "An event's clip starts this long before the event.",
    "record.post_capture_s": "An event's clip ends this long after the event.",
    "record.segment_s": "Continuous and motion recording: seconds per file.",
    "record.retain_days": "Continuous and motion recording: days a segment is kept.",
    "record.preset": "The x264 preset.",
    "record.crf": "The x264 constant rate factor (lower: better and larger).",
    "record.x264_params": "x264 options over the preset; the default is camserver's tuning for fixed cameras on "
                          "small CPUs (left out with ultrafast and superfast).",
    "record.buffer_mb": "The pre-capture ring of one camera, at most.",
    # [[webhooks]]
    "webhooks": "`[[webhooks]]`: event changes POSTed as JSON `{\"type\", \"before\", \"after\"}`.",
    "webhooks[].url": "Where to POST (required).",
    "webhooks[].types": "Which changes: new, update, end.",
    "webhooks[].cameras": "Only these cameras; `[]` = every camera.",
    "webhooks[].labels": "Only these labels; `[]` = every label.",
    "webhooks[].headers": "Extra request headers, e.g. a token.",
    "webhooks[].follow_redirects": "`true`: follow a redirect that stays on the same origin.",
    # [[notify]]
    "notify": "`[[notify]]`: phone notifications through Apprise URLs.",
    "notify[].urls": "Apprise URLs (they hold secrets: shown redacted everywhere), e.g. `ntfys://ntfy.sh/my-topic`.",
    "notify[].cameras": "Only these cameras; `[]` = every camera.",
    "notify[].labels": "Only these labels; `[]` = every label that makes events.",
    "notify[].zones": "Non-empty: only objects that entered one of these `[[events.zones]]`.",
    "notify[].cooldown_s": "Per camera and label: at most one notification in this window.",
    "notify[].attach": "snapshot (the best frame with its box), crop (around the object) or none.",
    "notify[].clip": "`true`: when the event ends, a second message with its clip.",
    # [mute]
    "mute.holds": "What a mute (page, `POST /api/mute`, Home Assistant's switch) holds back: `notify` "
                  "(`[[notify]]` messages), `webhooks`; events are still recorded and MQTT still reports them.",
    # [mqtt]
    "mqtt.host": "The broker; `\"\"` = MQTT off.",
    "mqtt.port": "The broker's port.",
    "mqtt.username": "User name at the broker; `\"\"` = none.",
    "mqtt.password": "Password at the broker.",
    "mqtt.client_id": "MQTT client id; `\"\"` = `camserver-<hostname>`. Two instances on one host need their own.",
    "mqtt.topic_prefix": "Every topic starts with this.",
    "mqtt.tls": "Connect with TLS.",
    "mqtt.ca_file": "CA certificates for TLS; `\"\"` = the system's.",
    "mqtt.homeassistant": "Publish Home Assistant discovery configs.",
    "mqtt.discovery_prefix": "Home Assistant's discovery prefix.",
    # [log]
    "log.level": "debug, info, warning, error.",
}
