"""Real third-party clients read the MJPEG stream: ffmpeg (and ffprobe) as VLC/Home Assistant do."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from conftest import connect_camera, make_jpeg, running_server, FakeDetector


async def _feed(cam, stop: asyncio.Event) -> None:
    seq = 0
    while not stop.is_set():
        seq += 1
        await cam.send(make_jpeg(seq, 320, 240))
        await asyncio.sleep(0.05)  # a 20 fps camera


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (.ci/run installs it)")
async def test_ffmpeg_reads_five_frames(tmp_path):
    """`ffmpeg -i http://.../stream.mjpg -frames:v 5` decodes five frames from a live camera."""
    async with running_server(FakeDetector()) as srv:
        cam = await connect_camera(srv.ws("ff"))
        stop = asyncio.Event()
        feeder = asyncio.create_task(_feed(cam, stop))
        try:
            proc = await asyncio.create_subprocess_exec(
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "mpjpeg",
                "-i", f"{srv.http}/cameras/ff/stream.mjpg",
                "-frames:v", "5", str(tmp_path / "f%02d.jpg"),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
        finally:
            stop.set()
            await feeder
        frames = sorted(tmp_path.glob("f*.jpg"))
        assert len(frames) == 5
        assert all(f.stat().st_size > 0 for f in frames)
        await cam.close()


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed (.ci/run installs it)")
async def test_ffprobe_detects_mjpeg_without_a_format_hint():
    """ffprobe recognises the stream by itself as MJPEG at the camera's size."""
    async with running_server(FakeDetector()) as srv:
        cam = await connect_camera(srv.ws("probe"))
        stop = asyncio.Event()
        feeder = asyncio.create_task(_feed(cam, stop))
        try:
            proc = await asyncio.create_subprocess_exec(
                "ffprobe", "-v", "error", "-select_streams", "v:0",
                "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0",
                f"{srv.http}/cameras/probe/stream.mjpg",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            stop.set()
            await feeder
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip().splitlines()[0] in ("mjpeg,320,240", "mjpeg,640,480")
        await cam.close()
