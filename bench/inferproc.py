"""The inference service (`python -m camserver.infer`) in a child process, for tests and benchmarks.

It runs in its own process group with the Triton server and its Python stub, so that `kill()` can
take the whole service down at once, as a crash or an OOM kill would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

READY_TEXT = "serving model"


def free_ports(n: int) -> list[int]:
    """n TCP ports free on 127.0.0.1 right now (Triton cannot report a port 0 it was given)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _shared_memory() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("psm_*")}


def _mapped_shared_memory() -> set[str]:
    """Names under /dev/shm that some live process maps."""
    names = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:
            continue
        names.update(line.rsplit("/dev/shm/", 1)[1].split()[0] for line in text.splitlines() if "/dev/shm/" in line)
    return names


class InferProcess:
    """One inference service on 127.0.0.1; `start()` returns once it serves; its log is kept.

    Plain blocking calls (a thread drains the log), so one service can outlive an event loop: a
    module-scoped test fixture, or `await asyncio.to_thread(service.start)` in a benchmark.
    """

    def __init__(self, *args: str, ports: list[int] | None = None) -> None:
        self.args = args
        self.grpc_port, self.http_port, self.metrics_port = ports or free_ports(3)
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._drain: threading.Thread | None = None
        self._shm_before: set[str] = set()
        self._workspace: Path | None = None

    @property
    def grpc(self) -> str:
        """grpc:// URL of the service."""
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        """http:// URL of the service."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 180) -> None:
        """Start the service (again, on the same ports) and wait until it serves."""
        self.lines = []
        self._ready.clear()
        self._shm_before = _shared_memory()
        # PyTriton copies Triton (22 MB) into its workspace; a killed service cannot remove it
        self._workspace = Path(tempfile.mkdtemp(prefix="camserver-infer-"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "camserver.infer", "--host", "127.0.0.1", "--grpc-port", str(self.grpc_port),
             "--http-port", str(self.http_port), "--metrics-port", str(self.metrics_port),
             "--workspace", str(self._workspace / "pytriton"), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            env=dict(os.environ, YOLO_OFFLINE=os.environ.get("YOLO_OFFLINE", "1")),
        )
        self._drain = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._drain.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._drain.join(5)
                what = f"exited ({self.proc.returncode})" if self.proc.poll() is not None else "did not serve in time"
                self.kill()
                raise RuntimeError(f"camserver.infer {what} during start-up:\n" + "".join(self.lines[-30:]))

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if READY_TEXT in line:
                self._ready.set()

    def pids(self) -> list[int]:
        """Every live process of the service's group (Python, tritonserver, the stub and its helpers)."""
        if self.proc is None:
            return []
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.getpgid(int(entry.name)) == self.proc.pid:
                        out.append(int(entry.name))
                except (ProcessLookupError, PermissionError):
                    pass
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds so far per process name in the group (Linux /proc)."""
        out: dict[str, float] = {}
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1: stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return out

    def _finish(self) -> None:
        if self._drain is not None:
            self._drain.join(5)
            self._drain = None
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        # a killed service leaves its shared memory behind: PyTriton's segment, named after the
        # serving process, and its tensor store's blocks (psm_*), which no live process maps any more
        if self.proc is not None:
            for path in Path("/dev/shm").glob(f"pytrtion{self.proc.pid}-*"):
                path.unlink(missing_ok=True)
        leftovers = _shared_memory() - self._shm_before
        if leftovers:
            mapped = _mapped_shared_memory()
            for name in leftovers - mapped:
                (Path("/dev/shm") / name).unlink(missing_ok=True)
        if self._workspace is not None:
            shutil.rmtree(self._workspace, ignore_errors=True)
            self._workspace = None

    def kill(self) -> None:
        """SIGKILL the whole service group at once (a crash) and wait until every process is gone."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:  # Triton and the stub go with the group
            time.sleep(0.05)
        self._finish()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait (kill after `timeout`); returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._finish()
        return rc
