"""Real third-party clients read the MJPEG stream: ffmpeg/ffprobe (as VLC and Home Assistant do) and curl."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from conftest import FakeDetector, connect_camera, feeding, running_server


async def run_client(*argv: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run a client program to completion; returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (.ci/run installs it)")
async def test_ffmpeg_reads_five_frames(tmp_path):
    """`ffmpeg -i http://.../stream.mjpg -frames:v 5` decodes five frames from a live camera."""
    async with running_server(FakeDetector()) as srv:
        cam = await connect_camera(srv.ws("ff"))
        async with feeding(cam):
            rc, _, err = await run_client(
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "mpjpeg",
                "-i", f"{srv.http}/cameras/ff/stream.mjpg", "-frames:v", "5", str(tmp_path / "f%02d.jpg"),
            )
        assert rc == 0, err
        frames = sorted(tmp_path.glob("f*.jpg"))
        assert len(frames) == 5
        assert all(f.stat().st_size > 0 for f in frames)
        await cam.close()


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed (.ci/run installs it)")
async def test_ffprobe_detects_mjpeg_without_a_format_hint():
    """ffprobe recognises the stream by itself as MJPEG at the camera's size."""
    async with running_server(FakeDetector()) as srv:
        cam = await connect_camera(srv.ws("probe"))
        async with feeding(cam):
            rc, out, err = await run_client(
                "ffprobe", "-v", "error", "-select_streams", "v:0",
                "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0",
                f"{srv.http}/cameras/probe/stream.mjpg",
            )
        assert rc == 0, err
        assert out.strip().splitlines()[0] in ("mjpeg,320,240", "mjpeg,640,480")
        await cam.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
async def test_curl_reads_multipart_jpegs():
    """`curl -N` receives parts that each hold a complete JPEG with a matching Content-Length."""
    async with running_server(FakeDetector()) as srv:
        cam = await connect_camera(srv.ws("curl"))
        async with feeding(cam):
            proc = await asyncio.create_subprocess_exec(
                "curl", "-s", "-N", f"{srv.http}/cameras/curl/stream.mjpg", stdout=asyncio.subprocess.PIPE
            )
            data = b""
            try:
                async with asyncio.timeout(20):
                    while data.count(b"--camserverframe\r\n") < 5:
                        data += await proc.stdout.read(65536)
            finally:
                proc.kill()
                await proc.wait()
        parts = data.split(b"--camserverframe\r\n")[1:4]
        for part in parts:
            head, _, body = part.partition(b"\r\n\r\n")
            length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
            assert body[:length].startswith(b"\xff\xd8") and body[:length].endswith(b"\xff\xd9")
            assert body[length:] == b"\r\n"
        await cam.close()
