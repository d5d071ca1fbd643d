"""One event per object: overlapping objects, occlusion, crossing paths; object filters and masks; the motion-gated path.

The scenes are drawn with the shapes model's figures and detected by the trained shapes model
(imgsz 320), then fed to the rules as the server does, frame by frame at 10 fps.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import websockets

from camserver.config import ConfigError, FilterConfig, MotionConfig, from_mapping
from camserver.detect import Detection
from camserver.events.filters import ObjectFilter
from camserver.events.rules import CameraRules, Change, moved
from camserver.events.tracker import CameraTracker, Track
from camserver.motion import MotionDetector, MotionGate
from camserver.sim.simcam import make_scene
from conftest import make_config, wait_for

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
MODEL = TESTDATA / "shapes-yolo11n.pt"
needs_model = pytest.mark.skipif(not MODEL.exists(), reason="../shared/testdata/shapes-yolo11n.pt not beside the checkout")
FPS = 10
W, H = 640, 480
T0 = 1_800_000_000.0


def open_events(rules: CameraRules) -> list:
    """The events of a camera's rules still in progress."""
    return [obj.event for obj in rules.objects.values() if obj.event is not None]


def shapes():
    """The draw_shapes module of the test data."""
    sys.path.insert(0, str(TESTDATA))
    import draw_shapes

    return draw_shapes


def jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def car_and_person_frames(n: int = 150, enter: int = 10, speed: float = 8.0) -> list[tuple[bytes, bool]]:
    """A car parked mid-frame from the first frame; from frame `enter` a person walks across in front of it.

    Returns (JPEG, person visible) per frame. The person is visible in frames 11-101 and hides part
    of the car in frames ~36-80.
    """
    ds = shapes()
    background = make_scene(17)
    frames = []
    for i in range(n):
        img = background.copy()
        ds.draw_car(img, ds.car_box(cx=330, bottom=400, width=260))
        visible = False
        if i >= enter:
            visible = ds.draw_person(img, ds.person_box(cx=-50 + speed * (i - enter), bottom=440, height=220)) is not None
        frames.append((jpeg(img), visible))
    return frames


def crossing_frames(speed: float, plain: bool) -> list[bytes]:
    """Two people walking towards each other and past each other; the one coming from the right is in front."""
    ds = shapes()
    frames = []
    for i in range(int(700 / speed / 2) + 10):
        img = np.full((H, W, 3), 128, np.uint8) if plain else make_scene(17)
        ds.draw_person(img, ds.person_box(cx=-40 + speed * i, bottom=440, height=220))
        ds.draw_person(img, ds.person_box(cx=680 - speed * i, bottom=420 if not plain else 430, height=200))
        frames.append(jpeg(img))
    return frames


@pytest.fixture(scope="module")
def model():
    """The trained shapes detector through camserver's ultralytics backend, on the CPU."""
    from camserver.detect.backends.ultralytics import UltralyticsDetector

    return UltralyticsDetector(str(MODEL), device="cpu", conf=0.25, iou=0.45, imgsz=320, max_batch=16)


def detect_all(model, frames: list[bytes]) -> list[list[Detection]]:
    """The model's detections of every frame (in batches: a third of the CPU time of one by one)."""
    images = [cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR) for f in frames]
    return [dets for i in range(0, len(images), 16) for dets in model.detect(images[i : i + 16])]


@pytest.fixture(scope="module")
def car_scene(model) -> tuple[list[tuple[bytes, bool]], list[list[Detection]]]:
    """The car-and-person frames and the model's detections of each."""
    frames = car_and_person_frames()
    return frames, detect_all(model, [f for f, _ in frames])


def events_config(**values):
    return from_mapping({"events": {"labels": ["person", "car"], **values}}).events


def by_event(changes: list[Change]) -> dict[str, list[Change]]:
    out: dict[str, list[Change]] = defaultdict(list)
    for c in changes:
        out[c.after["id"]].append(c)
    return out


def feed(rules: CameraRules, detections: list[list[Detection]], jpegs: list[bytes] | None = None) -> list[Change]:
    """Every frame's detections to the rules at 10 fps, then the end of the scene (camera offline)."""
    changes = []
    for i, dets in enumerate(detections):
        changes += rules.on_frame(T0 + i / FPS, jpegs[i] if jpegs else b"", (W, H), dets)
    return changes + rules.end_all(T0 + len(detections) / FPS, "camera offline")


@needs_model
def test_parked_car_with_a_person_walking_in_front_gives_one_event_each(car_scene):
    """Car parked, person walking across in front of it: one car event, one person event; the car turns stationary
    stationary_s after it was first seen, while the person hides part of it and splits its box."""
    frames, detections = car_scene
    # the model does split the car while the person covers its middle: several car boxes in one frame
    assert max(sum(d.class_name == "car" for d in dets) for dets in detections) >= 2
    config = events_config(stationary_s=6.0)
    rules, timed = CameraRules("drive", config), []
    for i, dets in enumerate(detections):
        timed += [(T0 + i / FPS, c) for c in rules.on_frame(T0 + i / FPS, b"", (W, H), dets)]
    changes = [c for _, c in timed] + rules.end_all(T0 + len(detections) / FPS, "camera offline")
    events = by_event(changes)
    labels = sorted(steps[0].after["label"] for steps in events.values())
    assert labels == ["car", "person"], [(s[0].after["label"], s[0].after["start_time"] - T0) for s in events.values()]
    for steps in events.values():
        assert [c.type for c in steps].count("new") == 1 and steps[-1].type == "end"
    car = next(s for s in events.values() if s[0].after["label"] == "car")
    assert car[-1].after["end_reason"] == "camera offline"  # it never ended early
    assert not any("active" in c.reasons for c in car)
    turned = [(t, c) for t, c in timed if "stationary" in c.reasons]
    assert [c.after["label"] for _, c in turned] == ["car"]
    first_car = next(i for i, dets in enumerate(detections) if any(d.class_name == "car" for d in dets))
    assert turned[0][0] - T0 == pytest.approx(first_car / FPS + config.stationary_s, abs=0.15)
    person_frames = [i for i, (_, visible) in enumerate(frames) if visible]
    assert person_frames[0] / FPS < config.stationary_s < person_frames[-1] / FPS  # while the person passes


@needs_model
@pytest.mark.parametrize("speed, plain", [(8.0, True), (5.0, False)], ids=["plain-8px", "scene-5px"])
def test_two_people_crossing_give_two_events(model, speed, plain):
    """Two people crossing each other's path: two events, each lasting the whole scene (none ends at the crossing)."""
    frames = crossing_frames(speed, plain)
    detections = detect_all(model, frames)
    changes = feed(CameraRules("walk", events_config()), detections)
    events = by_event(changes)
    assert len(events) == 2, [(s[0].after["start_time"] - T0, s[-1].after["end_time"] - T0) for s in events.values()]
    for steps in events.values():
        assert steps[0].after["start_time"] - T0 < 1.0 and steps[-1].after["end_reason"] == "camera offline"


@needs_model
def test_motion_gated_pipeline_detects_the_person_and_rests_when_all_is_still(car_scene):
    """Motion detector + gate + rules, the model run only on frames that pass: the same two events, the person's frames
    detected from its first visible frames on, and once the car is stationary and the person gone, only re-checks."""
    frames, detections = car_scene
    config = MotionConfig()
    rules = CameraRules("drive", events_config(stationary_s=6.0, max_disappeared_s=2.0))
    motion, gate = MotionDetector(config), MotionGate(config)
    changes, reasons, moves = [], [], []
    for i, ((frame, _), dets) in enumerate(zip(frames, detections)):
        now = T0 + i / FPS
        result = motion.detect(frame, (W, H))
        reason = gate.decide(now, result.motion, rules.moving)
        reasons.append(reason)
        moves.append(result.motion)
        changes += rules.on_frame(now, frame, (W, H), dets) if reason else rules.on_held(now)
    changes += rules.end_all(T0 + len(frames) / FPS, "camera offline")
    events = by_event(changes)
    assert sorted(s[0].after["label"] for s in events.values()) == ["car", "person"]
    car = next(s for s in events.values() if s[0].after["label"] == "car")
    assert any("stationary" in c.reasons for c in car) and car[-1].after["end_reason"] == "camera offline"
    person = next(s for s in events.values() if s[0].after["label"] == "person")
    assert person[-1].after["end_reason"] == "disappeared"  # ended max_disappeared_s after it left, frames held or not
    visible = [i for i, (_, v) in enumerate(frames) if v]
    assert moves.index(True) - visible[0] <= 2  # motion alone catches the person entering
    assert sum(moves[i] for i in visible) / len(visible) >= 0.9  # and sees it walk, in front of the car too
    assert sum(reasons[i] is not None for i in visible) / len(visible) >= 0.9  # measured: 90 of 91 (not the last sliver)
    # the last 3 s: car stationary, person gone: the detector rests but for a re-check
    tail = reasons[-30:]
    assert sum(r is not None for r in tail) <= 1 and set(tail) <= {None, "recheck"}, tail


def test_moved_judges_position_not_box_size():
    """A box that loses or regains one side has not moved; both edges shifting, or scaling on both axes, is a move."""
    car = (200.0, 270.0, 460.0, 400.0)
    assert not moved(car, (200.0, 270.0, 300.0, 398.0))  # the right part hidden
    assert not moved(car, (380.0, 290.0, 458.0, 402.0))  # only the right part seen
    assert not moved(car, (195.0, 268.0, 500.0, 404.0))  # box swollen by something beside it
    assert not moved(car, (203.0, 272.0, 462.0, 401.0))  # detector jitter
    assert moved(car, (230.0, 270.0, 490.0, 400.0))  # 30 px to the right
    assert moved(car, (200.0, 250.0, 460.0, 380.0))  # 20 px up
    assert moved(car, (150.0, 230.0, 510.0, 430.0))  # closer: larger on both axes
    assert moved(car, (250.0, 300.0, 410.0, 380.0))  # further: smaller on both axes


class ScriptedTracker:
    """Stands in for BYTETracker: the test says which track id each detection gets."""

    def __init__(self, max_disappeared_s: float) -> None:
        self.ids: list[int] = []

    def update(self, detections: list[Detection], size, now=None) -> list[Track]:
        return [Track(i, d.class_name, d.class_id, d.confidence, d.box) for i, d in zip(self.ids, detections)]


def person(x: float, y: float = 100.0, w: float = 50.0, h: float = 150.0, score: float = 0.9) -> Detection:
    return Detection(0, "person", score, (x, y, x + w, y + h))


def run_script(rules: CameraRules, script: list[list[tuple[int, Detection]]]) -> list[Change]:
    changes = []
    for i, frame in enumerate(script):
        rules.tracker.ids = [tid for tid, _ in frame]
        changes += rules.on_frame(T0 + i / FPS, b"", (W, H), [d for _, d in frame])
    return changes


def test_lost_track_continues_as_the_new_track_on_its_path():
    """A person's track is lost for 1 s and comes back as a new id where the person was heading: same event."""
    rules = CameraRules("c", events_config(), tracker=ScriptedTracker)
    script = [[(1, person(10 + 10 * i))] for i in range(20)]  # 100 px/s to the right
    script += [[] for _ in range(10)]  # hidden for 1 s
    script += [[(7, person(10 + 10 * i))] for i in range(30, 45)]  # back, 100 px further
    assert len(by_event(run_script(rules, script))) == 1
    (event,) = open_events(rules)
    assert rules.objects[7].event is event and event.box[0] == 10 + 10 * 44


def test_new_track_away_from_the_lost_objects_path_is_a_new_event():
    """A new track far from where the lost person was heading (or the other way) is another person: a new event."""
    rules = CameraRules("c", events_config(), tracker=ScriptedTracker)
    script = [[(1, person(300 + 10 * i))] for i in range(20)]
    script += [[(2, person(20.0))] for _ in range(10)]
    assert len(by_event(run_script(rules, script))) == 2


def test_someone_entering_where_a_person_walked_out_is_a_new_event():
    """A person walks out at the right edge; 2 s later someone walks in there: not where the first was heading, a new event."""
    rules = CameraRules("c", events_config(), tracker=ScriptedTracker)
    script = [[(1, person(400 + 20 * i))] for i in range(10)]  # out of the frame at the right
    script += [[] for _ in range(20)]
    script += [[(2, person(590 - 20 * i))] for i in range(10)]  # in from the right, walking left
    assert [c.type for c in run_script(rules, script)].count("new") == 2


def test_second_track_inside_an_event_object_starts_no_event_until_it_leaves_it():
    """A second box of the same label mostly inside an event's object is a piece of it (no event); one that walks
    out of it and on is another object and gets its own event."""
    rules = CameraRules("c", events_config(), tracker=ScriptedTracker)
    big = person(200.0, w=100.0, h=200.0)
    script = [[(1, big)] for _ in range(5)]
    script += [[(1, big), (2, person(210.0 + i, y=110.0, w=40.0, h=120.0))] for i in range(20)]  # inside
    assert len(by_event(run_script(rules, script))) == 1
    script = [[(1, big), (2, person(310.0 + 15 * i, y=110.0, w=40.0, h=120.0))] for i in range(10)]  # out and away
    assert [c.type for c in run_script(rules, script)].count("new") == 1
    assert len(open_events(rules)) == 2


def test_tracker_keeps_lost_tracks_max_disappeared_s_at_the_real_frame_rate():
    """BYTETracker's lost-track buffer (in frames) follows the camera's real rate: 5 s is 50 frames at 10 fps, 10 at 2 fps."""
    tracker = CameraTracker(5.0)
    det = [Detection(0, "person", 0.9, (10.0, 10.0, 60.0, 160.0))]
    for i in range(80):
        tracker.update(det, (W, H), T0 + i / 10)
    assert tracker.frames_kept == 50  # the frames of the last 5 s
    for i in range(30):
        tracker.update(det, (W, H), T0 + 8 + i / 2)
    assert tracker.frames_kept == 10
    # a lost track is dropped once unseen for longer than that, not after 30 fps worth of frames
    (first,) = tracker.update(det, (W, H), T0 + 30)
    for i in range(1, 12):
        tracker.update([], (W, H), T0 + 30 + i / 2)
    again = tracker.update(det, (W, H), T0 + 36.5) + tracker.update(det, (W, H), T0 + 37.0)  # a new track: 2 frames
    assert [t.track_id for t in again] == [first.track_id + 1]
    # unseen for exactly max_disappeared_s: the lost track is still found again
    tracker = CameraTracker(5.0)
    for i in range(10):
        (first,) = tracker.update(det, (W, H), T0 + i / 2)
    for i in range(10, 19):
        tracker.update([], (W, H), T0 + i / 2)
    assert [t.track_id for t in tracker.update(det, (W, H), T0 + 9.5)] == [first.track_id]


def test_held_frames_keep_a_stationary_object_and_its_event():
    """Frames held by the motion gate: the parked car stays seen (no "disappeared"), turns stationary on time, and the
    rules report nothing moving; a person's event still ends max_disappeared_s after it was last detected."""
    rules = CameraRules("c", events_config(), tracker=ScriptedTracker)
    car = Detection(1, "car", 0.9, (200.0, 270.0, 460.0, 400.0))
    changes = []
    for i in range(20):
        rules.tracker.ids = [1]
        changes += rules.on_frame(T0 + i / FPS, b"", (W, H), [car])
    assert rules.moving
    for i in range(20, 400):  # 38 s of held frames
        changes += rules.on_held(T0 + i / FPS)
    events = by_event(changes)
    (steps,) = events.values()
    assert all(c.type != "end" for c in steps)
    stationary = [c for c in steps if "stationary" in c.reasons]
    assert len(stationary) == 1 and not rules.moving
    assert open_events(rules) and open_events(rules)[0].stationary


# --- object filters and masks --------------------------------------------------------------------


def test_label_filters_drop_detections_before_tracking():
    """Per label: area in pixels or as a share of the frame, width/height ratio, min_score; other labels untouched."""
    config = events_config(filters={"person": {"min_area": 2000, "max_area": 0.25, "min_ratio": 0.2, "max_ratio": 1.0,
                                               "min_score": 0.6},
                                    "car": {"min_area": 0.05}})
    f = ObjectFilter(config, "c")
    ok = Detection(0, "person", 0.9, (100.0, 100.0, 150.0, 250.0))  # 50x150 = 7500 px, ratio 0.33
    assert f.keeps(ok, (W, H))
    assert not f.keeps(Detection(0, "person", 0.9, (100.0, 100.0, 120.0, 160.0)), (W, H))  # 1200 px
    assert not f.keeps(Detection(0, "person", 0.9, (0.0, 0.0, 400.0, 400.0)), (W, H))  # > 25% of the frame
    assert not f.keeps(Detection(0, "person", 0.9, (100.0, 100.0, 300.0, 150.0)), (W, H))  # lying: ratio 4
    assert not f.keeps(Detection(0, "person", 0.55, ok.box), (W, H))  # under the label's min_score
    assert not f.keeps(Detection(1, "car", 0.9, (0.0, 0.0, 100.0, 100.0)), (W, H))  # 3% < 5% of the frame
    assert f.keeps(Detection(1, "car", 0.9, (0.0, 0.0, 200.0, 100.0)), (W, H))
    assert not f.keeps(Detection(2, "dog", 0.9, ok.box), (W, H))  # not in events.labels


def test_label_threshold_overrides_the_global_one():
    """[events.filters.<label>] threshold: that label needs a higher median score to become an event."""
    config = events_config(threshold=0.7, filters={"person": {"threshold": 0.95}})
    rules = CameraRules("c", config, tracker=ScriptedTracker)
    script = [[(1, person(100.0, score=0.9)), (2, Detection(1, "car", 0.9, (300.0, 300.0, 500.0, 400.0)))]
              for _ in range(10)]
    events = by_event(run_script(rules, script))
    assert [s[0].after["label"] for s in events.values()] == ["car"]


def test_object_mask_drops_detections_standing_inside_it():
    """A detection whose bottom centre is inside an object mask is dropped (for the mask's labels only)."""
    spot = [[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]]
    poster = [[0.0, 0.0], [0.3, 0.0], [0.3, 0.4], [0.0, 0.4]]
    config = events_config(masks=[{"camera": "drive", "points": spot, "labels": ["car"]},
                                  {"camera": "drive", "points": poster}, {"camera": "other", "points": spot}])
    f = ObjectFilter(config, "drive")
    parked = Detection(1, "car", 0.9, (400.0, 200.0, 600.0, 400.0))  # bottom centre (500, 400): in the spot
    assert not f.keeps(parked, (W, H))
    assert f.keeps(Detection(0, "person", 0.9, (450.0, 200.0, 500.0, 400.0)), (W, H))  # the spot masks cars only
    assert f.keeps(Detection(1, "car", 0.9, (400.0, 0.0, 600.0, 200.0)), (W, H))  # box overlaps, bottom outside
    assert not f.keeps(Detection(0, "person", 0.9, (20.0, 20.0, 80.0, 150.0)), (W, H))  # on the poster
    assert f.keeps(parked, (W, H)) is False and ObjectFilter(config, "elsewhere").keeps(parked, (W, H))
    rules = CameraRules("drive", config, tracker=ScriptedTracker)
    assert run_script(rules, [[(1, parked)] for _ in range(10)]) == [] and not rules.objects


@pytest.mark.parametrize("events, match", [
    ({"filters": {"person": {"min_aera": 10}}}, r"events.filters.person.min_aera = 10: unknown key"),
    ({"filters": {"person": {"min_area": 5000, "max_area": 100}}}, r"events.filters.person.min_area = 5000.0: is larger than max_area"),
    ({"filters": {"person": {"min_ratio": 2.0, "max_ratio": 0.5}}}, r"events.filters.person.min_ratio = 2.0: is larger than max_ratio"),
    ({"filters": {"person": {"min_score": 1.5}}}, r"events.filters.person.min_score = 1.5: must be a number from 0.0 to 1.0"),
    ({"filters": {"person": {"max_ratio": 0}}}, r"events.filters.person.max_ratio = 0: must be a number >= 0.001"),
    ({"filters": {"persn": {"min_area": 10}}}, r"events.filters.persn.*not in events.labels"),
    ({"filters": {"person": 3}}, r"must be a table"),
    ({"masks": [{"camera": "door", "points": [[0, 0], [1, 0]]}]}, r"events.masks\[0\].points = .*: must be 3 or more"),
    ({"masks": [{"camera": "door", "points": [[0, 0], [1, 0], [1, 2]]}]}, r"events.masks\[0\].points = .*from 0 to 1"),
    ({"masks": [{"camera": "door", "points": [[0, 0], [1, 0], [1, 1]], "labels": []}]}, r"events.masks\[0\].labels"),
    ({"masks": [{"points": [[0, 0], [1, 0], [1, 1]]}]}, r"events.masks\[0\].camera = None: is required"),
])
def test_filter_and_mask_config_errors_are_one_clear_config_error(events, match):
    """A bad polygon, an unknown key or label, min > max: one ConfigError naming the key and what is allowed."""
    with pytest.raises(ConfigError, match=match):
        from_mapping({"events": {"labels": ["person", "car"], **events}})


def test_filters_config_mixed_area_units_and_any_label():
    """min_area in pixels with max_area as a fraction is allowed (they compare only per frame); labels ["*"] takes any filter."""
    config = from_mapping({"events": {"labels": ["*"], "filters": {"dog": {"min_area": 500, "max_area": 0.5}}}}).events
    assert dict(config.filters)["dog"] == FilterConfig(min_area=500, max_area=0.5)


# --- through the running server ------------------------------------------------------------------


@needs_model
async def test_server_car_and_person_in_front_give_one_event_each(tmp_path):
    """The real server, the shapes model, 10 fps: a parked car and a person walking in front of it give exactly one car
    event and one person event, and the car is marked stationary while the person passes."""
    from camserver.app import CamServer

    config = make_config(detect={"model": str(MODEL), "imgsz": 320, "cache_dir": str(tmp_path / "cache")},
                         events={"labels": ["person", "car"], "stationary_s": 6.0, "max_disappeared_s": 2.0},
                         storage={"dir": str(tmp_path / "data")})
    frames = car_and_person_frames(n=120)
    async with CamServer.from_config(config) as server:
        async with websockets.connect(f"ws://127.0.0.1:{server.ws_port}/ws/drive", compression=None) as cam:
            for frame, _ in frames:
                await cam.send(frame)
                await asyncio.sleep(1 / FPS)
            await wait_for(lambda: server.events.idle, timeout=30, what="events caught up")
            open_now = [e.label for r in server.events.rules.values() for e in open_events(r)]
            assert open_now.count("car") == 1
            car = next(e for r in server.events.rules.values() for e in open_events(r) if e.label == "car")
            assert car.stationary
        await wait_for(lambda: not any(open_events(r) for r in server.events.rules.values()), timeout=30,
                       what="events ended")
        events = server.events.store.query({}, 10, None)
    assert sorted(e["label"] for e in events) == ["car", "person"], [(e["label"], e["start_time"], e["end_time"])
                                                                     for e in events]
