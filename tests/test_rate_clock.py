"""The Settings view's "about N days at today's rate" under wall-clock steps: the server as a process under
faketime records continuously, the camera stops, then the wall clock steps forward 1 day and back 1 h. The bytes
"recorded in the last 24 h" are the same after each step: they are counted on keep-time (storage/keepclock.py),
not on the recordings' wall-clock labels, which a step forward would have put a whole day in the past."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
import websockets

from conftest import WAIT_S, make_jpeg
from serverproc import ServerProcess
from test_clock_e2e import FAKETIME

pytestmark = pytest.mark.skipif(not FAKETIME.exists(), reason=f"faketime not installed ({FAKETIME}; apt-get install faketime)")


async def rate(http: aiohttp.ClientSession, base: str) -> dict:
    async with http.get(f"{base}/api/config") as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["storage"]


async def test_the_days_at_todays_rate_survive_wall_clock_steps(tmp_path, monkeypatch):
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    (tmp_path / "config.toml").write_text(f'[storage]\ndir = "{tmp_path / "data"}"\n'
                                          '[record]\nmode = "continuous"\nsegment_s = 2\n')
    for key, value in {"LD_PRELOAD": str(FAKETIME), "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_NO_CACHE": "1",
                       "FAKETIME_DONT_FAKE_MONOTONIC": "1"}.items():
        monkeypatch.setenv(key, value)
    server = await ServerProcess.start("--config", "config.toml", "--model", "none", cwd=tmp_path, timeout=WAIT_S * 6)
    for key in ("LD_PRELOAD", "FAKETIME_TIMESTAMP_FILE"):
        monkeypatch.delenv(key)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with websockets.connect(server.ws("door"), compression=None) as cam:
                began = time.monotonic()
                for seq in range(60):  # 6 s at 10 fps: three segments
                    await asyncio.wait_for(cam.send(make_jpeg(seq, noise=True)), WAIT_S)
                    await asyncio.sleep(max(0.0, began + (seq + 1) / 10 - time.monotonic()))
            deadline = time.monotonic() + WAIT_S * 2
            before = await rate(http, server.http)
            while before["written_bytes"] == 0 or before["days"] is None:  # the camera's last file is finished too
                assert time.monotonic() < deadline, before
                await asyncio.sleep(0.3)
                before = await rate(http, server.http)
            await asyncio.sleep(1.0)
            before = await rate(http, server.http)
            assert before["written_bytes"] > 100_000 and before["per_day_bytes"] > 0, before
            for step in ("+1d", "-1h"):
                offset.write_text(step + "\n")
                await asyncio.sleep(1.5)  # the server's clock watch sees the step
                after = await rate(http, server.http)
                assert after["written_bytes"] == before["written_bytes"], (step, before, after)
                assert after["days"] is not None and after["days"] == pytest.approx(before["days"], rel=0.05), (step, after)
            async with http.get(f"{server.http}/healthz") as resp:
                assert (await resp.json())["clock"]["steps"] == 2
    finally:
        assert await server.stop(timeout=30) == 0, "".join(server.lines[-40:])
