"""The lean install: `make run` installs only what running needs, `make test` the extras on top, and torch's
CPU build comes from its own index on a machine without an NVIDIA GPU, or the default index when that one is
unreachable (tools/install_torch.py, run here against a fake python and local indexes: nothing is downloaded)."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "install_torch.py"
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def fake_python(folder: Path, has_torch: bool) -> tuple[Path, Path]:
    """A stand-in for the venv's python that logs every call: `-c` (the torch probe) answers `has_torch`,
    `-m pip` succeeds without doing anything."""
    log = folder / "calls.log"
    script = folder / "python"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n"
                      f"if [ \"$1\" = \"-c\" ]; then exit {0 if has_torch else 1}; fi\nexit 0\n")
    script.chmod(0o755)
    return script, log


def install_torch(tmp_path: Path, index: str, *, gpu: bool = False, has_torch: bool = False) -> tuple[str, list[str]]:
    python, log = fake_python(tmp_path, has_torch)
    proc = tmp_path / "proc-nvidia"
    if gpu:
        proc.mkdir()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--python", str(python), "--index", index, "--nvidia-smi",
         "no-such-nvidia-smi-here", "--nvidia-proc", str(proc), "--platform", "linux"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    return result.stdout.strip(), [c for c in calls if not c.startswith("-c")]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Index(http.server.BaseHTTPRequestHandler):
    """A package index that has a /torch/ page."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/whl/cpu/torch/" else 404)
        self.end_headers()
        self.wfile.write(b"<a href='torch-2.5.1+cpu.whl'>torch</a>")

    def log_message(self, *args) -> None:
        pass


def test_offline_it_falls_back_to_the_default_index_and_says_so(tmp_path):
    """No GPU, the CPU index unreachable: one line saying so and falling back; pip is never asked to use it."""
    index = f"http://127.0.0.1:{closed_port()}/whl/cpu"
    out, pip_calls = install_torch(tmp_path, index)
    assert out.startswith(f"torch: no NVIDIA GPU here, but torch's CPU index {index} is not reachable (")
    assert "falling back to the default index" in out and out.count("\n") == 0
    assert pip_calls == []


def test_a_reachable_cpu_index_gives_the_cpu_build(tmp_path):
    """No GPU, the CPU index answers: torch and torchvision are installed from it, and it says so."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
        out, pip_calls = install_torch(tmp_path, index)
    finally:
        server.shutdown()
        server.server_close()
    assert out == f"torch: no NVIDIA GPU here, so installed torch's CPU build from {index}"
    assert pip_calls == [f"-m pip install -q --index-url {index} torch torchvision"]


def test_an_index_without_torch_falls_back(tmp_path):
    """An index that answers 404 for torch (a mirror without it) counts as unreachable."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out, pip_calls = install_torch(tmp_path, f"http://127.0.0.1:{server.server_address[1]}/simple")
    finally:
        server.shutdown()
        server.server_close()
    assert "not reachable (HTTP 404)" in out and pip_calls == []


def test_a_gpu_or_an_installed_torch_is_left_to_the_default(tmp_path):
    """With an NVIDIA driver, torch comes from the default index (CUDA); an installed torch is never replaced."""
    index = f"http://127.0.0.1:{closed_port()}/whl/cpu"
    (tmp_path / "gpu").mkdir()
    out, pip_calls = install_torch(tmp_path / "gpu", index, gpu=True)
    assert out == "torch: from the default index (an NVIDIA GPU is here: the CUDA build)" and pip_calls == []
    (tmp_path / "kept").mkdir()
    out, pip_calls = install_torch(tmp_path / "kept", index, has_torch=True)
    assert out == "torch: already installed; leaving it as it is" and pip_calls == []


def make_plan(target: str) -> list[str]:
    """The commands `make <target>` would run on a fresh clone (a dry run that remakes everything)."""
    result = subprocess.run(["make", "-n", "-B", target], capture_output=True, text=True, cwd=ROOT, timeout=60,
                            env=dict(os.environ, MAKEFLAGS=""))
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@needs_make
def test_make_run_installs_only_what_running_needs_and_make_test_adds_the_extras():
    """`make run`: torch's decision, then camserver without extras; `make test`: the same first, then the
    test, triton, infer and docs extras and PyTriton, each behind its own stamp."""
    run = make_plan("run")
    installs = [line for line in run if "pip install" in line or "install_torch" in line]
    assert installs == [".venv/bin/python tools/install_torch.py --python .venv/bin/python",
                        ".venv/bin/python -m pip install -q -e ."]
    assert "touch .venv/.installed-run" in run and "touch .venv/.installed" not in run
    test = make_plan("test")
    assert test.index(".venv/bin/python -m pip install -q -e .") < \
        test.index(".venv/bin/python -m pip install -q -e '.[test,triton,infer,docs]'")
    assert "touch .venv/.installed-run" in test and "touch .venv/.installed" in test
    assert any("nvidia-pytriton" in line for line in test)
