"""camserver in a child process on free ports, for end-to-end tests and benchmarks (bench/ imports it)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable


def config_file(text: str) -> str:
    """A TOML config in a fresh temporary folder, with its storage.dir beside it; returns its path."""
    folder = Path(tempfile.mkdtemp(prefix="camserver-config-"))
    path = folder / "camserver.toml"
    path.write_text(f'[storage]\ndir = "{folder / "data"}"\n' + text)
    return str(path)



class ServerProcess:
    """`python -m camserver` on 127.0.0.1, ports read from its --ports-file, its log kept."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.ws_port = self.http_port = 0
        self._drain: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, *args: str, cwd: str | Path | None = None, timeout: float = 120,
                    module: str = "camserver", preexec_fn: Callable[[], None] | None = None) -> ServerProcess:
        """Start `python -m module` with extra CLI `args`; returns once both listeners are up.

        `preexec_fn` runs in the child before it starts (e.g. to lower its resource limits).
        """
        ports = Path(tempfile.mkdtemp(prefix="camserver-ports-")) / "ports.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, "--host", "127.0.0.1", "--ws-port", "0", "--http-port", "0",
            "--ports-file", str(ports), "--no-mdns", *args,  # a test that advertises passes --mdns
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=dict(os.environ, YOLO_OFFLINE=os.environ.get("YOLO_OFFLINE", "1")),
            preexec_fn=preexec_fn,
        )
        self = cls(proc)
        self._drain = asyncio.create_task(self._read_rest())
        try:
            async with asyncio.timeout(timeout):
                while not ports.exists():
                    if proc.returncode is not None or self._drain.done():
                        await proc.wait()
                        raise RuntimeError("camserver exited during start-up:\n" + "".join(self.lines))
                    await asyncio.sleep(0.05)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await self._drain
            raise
        bound = json.loads(ports.read_text())
        self.ws_port, self.http_port = bound["ws"], bound["http"]
        return self

    @property
    def http(self) -> str:
        """Base URL of the viewer side."""
        return f"http://127.0.0.1:{self.http_port}"

    def ws(self, camera_id: str) -> str:
        """Camera URL for `camera_id`."""
        return f"ws://127.0.0.1:{self.ws_port}/ws/{camera_id}"

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def _read_rest(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode())

    async def stop(self, timeout: float = 10) -> int:
        """SIGTERM, wait up to `timeout` (then kill and raise TimeoutError); returns the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                rc = await self.proc.wait()
                if self._drain is not None:
                    await self._drain
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise
        return rc
