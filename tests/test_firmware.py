"""Firmware host tests: the pure logic headers under g++, the sketch compiled against stand-in headers, and the
sketch run on a simulated board (tests/firmware/fake_board.cpp), each in gnu++11 (arduino-esp32 2.0.x) and gnu++2b
(3.x)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from camserver.board.firmware import OTA_SLOT_BYTES, VERSION_MARKER
from camserver.ingest.control import FPS_RANGE, FRAME_SIZES, QUALITY_RANGE, SENSOR_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
SKETCH_DIR = ROOT / "firmware" / "esp32_stream"
STUBS = Path(__file__).resolve().parent / "firmware" / "stubs"
GXX = shutil.which("g++")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ not installed (.ci/run installs it)")


# The language standards the cores build with: arduino-esp32 2.0.x (Arduino IDE and PlatformIO) uses
# gnu++11, 3.x uses gnu++2b. Every host build runs in both.
STANDARDS = ("gnu++11", "gnu++2b")
FIRMWARE_TESTS = Path(__file__).resolve().parent / "firmware"


@pytest.fixture(scope="module", params=STANDARDS)
def logic_test(request, tmp_path_factory) -> Path:
    """The host test program of camserver_logic.h, built with warnings as errors."""
    if GXX is None:
        pytest.skip("g++ not installed (.ci/run installs it)")
    exe = tmp_path_factory.mktemp("fw") / "logic_test"
    subprocess.run(
        [GXX, f"-std={request.param}", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined", "-I",
         str(SKETCH_DIR), "-o", str(exe), str(FIRMWARE_TESTS / "logic_test.cpp")],
        check=True, capture_output=True, text=True, timeout=300,
    )
    return exe


@pytest.fixture(scope="module", params=STANDARDS)
def sketch_sim(request, tmp_path_factory) -> Path:
    """The sketch itself with the simulated board (fake_board.cpp), built with warnings as errors."""
    if GXX is None:
        pytest.skip("g++ not installed (.ci/run installs it)")
    out = tmp_path_factory.mktemp("sim")
    shutil.copy(SKETCH_DIR / "secrets.example.h", out / "secrets.h")
    exe = out / "sketch_sim"
    result = subprocess.run(
        [GXX, f"-std={request.param}", "-O1", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
         "-fsanitize=address,undefined", "-I", str(STUBS), "-I", str(SKETCH_DIR), "-I", str(out), "-I",
         str(FIRMWARE_TESTS), "-x", "c++", str(FIRMWARE_TESTS / "sketch_sim.cpp"), "-x", "c++",
         str(FIRMWARE_TESTS / "fake_board.cpp"), "-o", str(exe)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return exe


def compile_sketch(*extra: str, std: str = "gnu++11") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GXX, f"-std={std}", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
         "-x", "c++", "-I", str(STUBS), *extra, "-include", "Arduino.h", str(SKETCH_DIR / "esp32_stream.ino")],
        capture_output=True, text=True,
    )


def test_logic_header_passes_its_host_tests(logic_test):
    """Every timer across millis() = 2^31 and 2^32, backoff, pacing, the send ledger, probation, the quality
    guard, path and auth building, hello/status JSON and control parsing pass (ASan/UBSan on)."""
    result = subprocess.run([str(logic_test)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    passed, failed = (int(w) for w in result.stdout.split() if w.isdigit())
    assert failed == 0 and passed > 100


def test_frame_size_tables_match(logic_test):
    """The firmware and the server know the same frame size names and sizes."""
    out = subprocess.run([str(logic_test), "frame-sizes"], capture_output=True, text=True, check=True).stdout
    assert {name: (w, h) for name, w, h in json.loads(out)} == FRAME_SIZES


def test_settings_tables_match(logic_test):
    """Firmware and server know the same settings, ranges and order, quality and fps limits, and OTA slot size."""
    out = json.loads(subprocess.run([str(logic_test), "settings"], capture_output=True, text=True, check=True).stdout)
    assert [(name, (lo, hi, switch)) for name, lo, hi, switch in out["settings"]] == list(SENSOR_SETTINGS.items())
    assert tuple(out["quality"]) == QUALITY_RANGE and tuple(out["fps"]) == FPS_RANGE
    assert out["ota_slot"] == OTA_SLOT_BYTES


# arduino-esp32's tools/partitions/min_spiffs.csv (2.0.x and 3.x): the table PlatformIO's
# board_build.partitions = min_spiffs.csv and the IDE's "Minimal SPIFFS" choice write.
MIN_SPIFFS = {
    "nvs": ("data", "nvs", 0x9000, 0x5000), "otadata": ("data", "ota", 0xE000, 0x2000),
    "app0": ("app", "ota_0", 0x10000, 0x1E0000), "app1": ("app", "ota_1", 0x1F0000, 0x1E0000),
    "spiffs": ("data", "spiffs", 0x3D0000, 0x20000), "coredump": ("data", "coredump", 0x3F0000, 0x10000),
}


def test_partition_table_is_the_cores_min_spiffs():
    """partitions.csv (used by the Arduino IDE) is the core's min_spiffs.csv, coredump partition included (without
    it 2.0.x logs "No core dump partition found!" at every boot): two app slots of 0x1E0000 in 4 MB."""
    rows = [[f.strip() for f in line.split(",")] for line in (SKETCH_DIR / "partitions.csv").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    table = {name: (kind, sub, int(offset, 16), int(size, 16)) for name, kind, sub, offset, size, *_ in rows}
    assert table == MIN_SPIFFS
    apps = [(sub, offset, size) for kind, sub, offset, size in table.values() if kind == "app"]
    assert apps == [("ota_0", 0x10000, OTA_SLOT_BYTES), ("ota_1", 0x10000 + OTA_SLOT_BYTES, OTA_SLOT_BYTES)]
    spans = sorted((offset, offset + size) for _, _, offset, size in table.values())
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))  # no overlap
    assert spans[-1][1] <= 4 * 1024 * 1024  # the ESP32-CAM's 4 MB flash
    ini = (SKETCH_DIR / "platformio.ini").read_text()
    assert "board_build.partitions = min_spiffs.csv" in ini and "huge_app" not in ini


def test_platformio_pins_a_platform_with_core_2_0_17_and_the_library_version():
    """platformio.ini pins espressif32 6.9.0 (arduino-esp32 2.0.17; 5.1.1 and older ship 2.0.4, whose
    esp32-camera has no pin_sccb_sda) and ArduinoWebsockets 0.5.4 exactly."""
    ini = (SKETCH_DIR / "platformio.ini").read_text()
    settings = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in ini.splitlines()) if _}
    assert settings["platform"] == "espressif32 @ 6.9.0"
    assert "gilmaimon/ArduinoWebsockets @ 0.5.4" in ini and "^0.5" not in ini


def test_stand_ins_name_the_callbacks_as_the_library_does():
    """The websocket stand-in's callback typedefs are those of ArduinoWebsockets 0.5.4 (tiny_websockets/client.hpp):
    MessageCallback and EventCallback take the client, the Partial ones do not."""
    text = (STUBS / "ArduinoWebsockets.h").read_text()
    for line in ("typedef std::function<void(WebsocketsClient&, WebsocketsMessage)> MessageCallback;",
                 "typedef std::function<void(WebsocketsMessage)> PartialMessageCallback;",
                 "typedef std::function<void(WebsocketsClient&, WebsocketsEvent, WSInterfaceString)> EventCallback;",
                 "typedef std::function<void(WebsocketsEvent, WSInterfaceString)> PartialEventCallback;"):
        assert line in text


SIM_SCENARIOS = [
    "wifi-drop-10-minutes", "wifi-drop-before-2^31", "wifi-drop-after-2^31", "wifi-drop-before-wrap",
    "wifi-drop-after-wrap", "failed-update-after-2^31", "server-restart-backoff",
    "wifi-retries-spaced", "wifi-ap-reboot", "counters-across-cuts", "never-dark-on-a-setting",
    "brownout-detector-kept", "rollback-exits-at-start", "rollback-no-server", "good-image-marked-valid",
]


def test_the_sketch_on_a_simulated_board(sketch_sim):
    """The unmodified sketch on a simulated board: streaming again within 10 s of WiFi returning at any uptime (also
    just past 2^31 and 2^32 ms), and at once after a failed update past 2^31 ms; a server restart waited out with
    the backoff; WiFi retries at least 5 s apart, at most 30 s, so a board whose access point stops the core's retries
    (refusing authentication while it boots) is back within 34 s; frames_sent within the frames in flight of what the
    server received across a silent cut and a server restart, the dead link left within 15 s;
    quality 4 at UXGA never dark for 10 s and not tried again on the next hello; the brownout detector left on; an
    update that exits at start or never reaches the server rolled back, the previous image reporting rolled_back;
    a good one marked valid only after streaming."""
    result = subprocess.run([str(sketch_sim)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines() if line.endswith(": ok")] == SIM_SCENARIOS
    passed, failed = (int(w) for w in result.stdout.splitlines()[-1].split() if w.isdigit())
    assert failed == 0 and passed >= 40


def test_sketch_carries_the_version_marker_the_server_reads():
    """The sketch's version sits behind the marker the server looks for in an uploaded image."""
    sketch = (SKETCH_DIR / "esp32_stream.ino").read_text()
    assert f'"{VERSION_MARKER.decode()}" FIRMWARE_VERSION_TEXT' in sketch
    version = sketch.split('#define FIRMWARE_VERSION_TEXT "', 1)[1].split('"', 1)[0]
    assert version and len(version) < 32


@needs_gxx
@pytest.mark.parametrize("std", STANDARDS)
def test_sketch_compiles_against_the_real_signatures(tmp_path, std):
    """The sketch type-checks against stand-ins declaring the Arduino, esp_camera, WiFi and websockets calls it uses,
    in the language standard of each core (gnu++11 for 2.0.x, gnu++2b for 3.x)."""
    shutil.copy(SKETCH_DIR / "secrets.example.h", tmp_path / "secrets.h")
    result = compile_sketch("-I", str(tmp_path), std=std)
    assert result.returncode == 0, result.stderr


@needs_gxx
@pytest.mark.parametrize("right, wrong", [
    ("ws->sendBinary(", "ws->sendBinry("),
    ("SENSOR_CALL(set_whitebal,", "SENSOR_CALL(set_white_balance,"),
    ("httpUpdate.update(client, request.url", "httpUpdate.update(request.url"),
    ("ledc_update_duty(LEDC_LOW_SPEED_MODE, LAMP_CHANNEL)", "ledc_update_duty(LAMP_CHANNEL)"),
    ("MDNS.queryHost(server_host.query, MDNS_QUERY_MS)", "MDNS.queryHost(server_host.query, MDNS_QUERY_MS, 1)"),
    ("ip[0], ip[1], ip[2], ip[3]", "ip.bytes[0], ip[1], ip[2], ip[3]"),
    ("esp_ota_mark_app_valid_cancel_rollback()", "esp_ota_mark_app_valid()"),
    ("invalid = esp_ota_get_last_invalid_partition()", "invalid = esp_ota_get_last_invalid_partition(running)"),
])
def test_stand_ins_catch_a_wrong_call(tmp_path, right, wrong):
    """A misspelt library call in the sketch fails the check (the stand-ins are not permissive)."""
    shutil.copy(SKETCH_DIR / "secrets.example.h", tmp_path / "secrets.h")
    sketch_copy = tmp_path / "sketch"
    shutil.copytree(SKETCH_DIR, sketch_copy)
    holding = [p for p in sorted(sketch_copy.iterdir()) if p.suffix in (".ino", ".h") and right in p.read_text()]
    assert len(holding) == 1, right
    holding[0].write_text(holding[0].read_text().replace(right, wrong))
    result = subprocess.run(
        [GXX, "-std=gnu++11", "-fsyntax-only", "-x", "c++", "-I", str(STUBS), "-I", str(tmp_path),
         "-include", "Arduino.h", str(sketch_copy / "esp32_stream.ino")],
        capture_output=True, text=True,
    )
    assert result.returncode != 0, wrong


@needs_gxx
def test_missing_secrets_stops_the_build_with_a_clear_error():
    """Without secrets.h the build stops with an #error telling the user to copy the example."""
    assert not (SKETCH_DIR / "secrets.h").exists() or pytest.skip("a local secrets.h exists")
    result = compile_sketch()
    assert result.returncode != 0
    assert "copy secrets.example.h to secrets.h" in result.stderr


def test_secrets_h_is_git_ignored():
    """firmware/esp32_stream/secrets.h can never be committed by accident."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "-q", "firmware/esp32_stream/secrets.h"], cwd=ROOT)
    assert result.returncode == 0


def test_no_credentials_in_the_repository():
    """No tracked file holds the tutorial's WiFi name, password or server address."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # hex so that this file does not contain them either
    banned = [bytes.fromhex(h) for h in ("6379636e7573", "3134373134373134", "3139322e3136382e302e3135")]
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        path = ROOT / name.decode()
        if path.is_file():
            data = path.read_bytes()
            for word in banned:
                assert word not in data, f"{name.decode()} contains a credential of the tutorial"
