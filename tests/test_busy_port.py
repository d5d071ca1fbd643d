"""A port already in use: `python -m camserver` (and so `make run`) says which flag and config key move it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("flag, key, side", [("--ws-port", "ingest.port", "camera"),
                                              ("--http-port", "http.port", "viewer")])
def test_a_busy_port_is_one_line_naming_the_flag_and_the_config_key(tmp_path, flag, key, side):
    """Port taken: exit 3, one line (no traceback) that names the address, the reason, the flag and the key."""
    with listening() as busy:
        port = busy.getsockname()[1]
        ports = {"--ws-port": "0", "--http-port": "0", flag: str(port)}
        result = subprocess.run(
            [sys.executable, "-m", "camserver", "--model", "none", "--host", "127.0.0.1", "--no-mdns",
             *[x for pair in ports.items() for x in pair]],
            capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, YOLO_OFFLINE="1"), timeout=120)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"camserver: cannot listen on 127.0.0.1:{port} for the {side}s: Address already in use")
    assert f"{flag} PORT" in last and f"{key} in config.toml" in last and f'make run ARGS="{flag} PORT"' in last


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_run_passes_args_through():
    """`make run ARGS=...` puts the flags on camserver's command line (a dry run: nothing is installed)."""
    result = subprocess.run(["make", "-n", "-W", "pyproject.toml", "-o", ".venv/.installed-run", "run",
                             'ARGS=--http-port 8081', "MODEL=x.pt"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    line = next(s for s in result.stdout.splitlines() if "-m camserver " in s)
    assert line.endswith('--model "x.pt" --http-port 8081'), line
