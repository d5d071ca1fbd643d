"""Firmware host tests: the pure logic header under g++, and the sketch compiled against stand-in headers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from camserver.ingest.control import FRAME_SIZES

ROOT = Path(__file__).resolve().parent.parent
SKETCH_DIR = ROOT / "firmware" / "esp32_stream"
STUBS = Path(__file__).resolve().parent / "firmware" / "stubs"
GXX = shutil.which("g++")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def logic_test(tmp_path_factory) -> Path:
    """The host test program of camserver_logic.h, built with warnings as errors."""
    if GXX is None:
        pytest.skip("g++ not installed (.ci/run installs it)")
    exe = tmp_path_factory.mktemp("fw") / "logic_test"
    subprocess.run(
        [GXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined", "-I", str(SKETCH_DIR),
         "-o", str(exe), str(Path(__file__).parent / "firmware" / "logic_test.cpp")],
        check=True, capture_output=True, text=True,
    )
    return exe


def compile_sketch(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GXX, "-std=gnu++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
         "-x", "c++", "-I", str(STUBS), *extra, "-include", "Arduino.h", str(SKETCH_DIR / "esp32_stream.ino")],
        capture_output=True, text=True,
    )


def test_logic_header_passes_its_host_tests(logic_test):
    """Backoff, pacing, path and auth building, hello/status JSON and control parsing pass (ASan/UBSan on)."""
    result = subprocess.run([str(logic_test)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    passed, failed = (int(w) for w in result.stdout.split() if w.isdigit())
    assert failed == 0 and passed > 100


def test_frame_size_tables_match(logic_test):
    """The firmware and the server know the same frame size names and sizes."""
    out = subprocess.run([str(logic_test), "frame-sizes"], capture_output=True, text=True, check=True).stdout
    assert {name: (w, h) for name, w, h in json.loads(out)} == FRAME_SIZES


@needs_gxx
def test_sketch_compiles_against_the_real_signatures(tmp_path):
    """The sketch type-checks against stand-ins declaring the Arduino, esp_camera, WiFi and websockets calls it uses."""
    shutil.copy(SKETCH_DIR / "secrets.example.h", tmp_path / "secrets.h")
    result = compile_sketch("-I", str(tmp_path))
    assert result.returncode == 0, result.stderr


@needs_gxx
def test_stand_ins_catch_a_wrong_call(tmp_path):
    """A misspelt library call in the sketch fails the check (the stand-ins are not permissive)."""
    shutil.copy(SKETCH_DIR / "secrets.example.h", tmp_path / "secrets.h")
    broken = (SKETCH_DIR / "esp32_stream.ino").read_text().replace("ws->sendBinary(", "ws->sendBinry(")
    sketch_copy = tmp_path / "sketch"
    shutil.copytree(SKETCH_DIR, sketch_copy)
    (sketch_copy / "esp32_stream.ino").write_text(broken)
    result = subprocess.run(
        [GXX, "-std=gnu++17", "-fsyntax-only", "-x", "c++", "-I", str(STUBS), "-I", str(tmp_path),
         "-include", "Arduino.h", str(sketch_copy / "esp32_stream.ino")],
        capture_output=True, text=True,
    )
    assert result.returncode != 0 and "sendBinry" in result.stderr


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
