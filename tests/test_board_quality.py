"""A quality the board refused (status `quality_refused`) is not sent again on every hello until the user
changes quality or framesize; the settings route shows the refusal."""

from __future__ import annotations

import asyncio
import contextlib
import json

from conftest import connect_camera, running_server, wait_for

LARGE = ("UXGA", "SXGA")  # frames that can overflow the JPEG buffer at high quality
SAFE_QUALITY = 12


class GuardedBoard:
    """A board over a real websocket whose quality guard acts as the firmware's (camserver_logic.h
    QualityGuard): quality below 12 at UXGA or SXGA fails its captures, so it uses 12, remembers that
    floor until it reboots (a new GuardedBoard), and reports the quality asked for as quality_refused.
    A capture it had to fail to learn the floor counts in `failed_captures`."""

    def __init__(self, ws, camera_id: str) -> None:
        self.ws, self.camera_id = ws, camera_id
        self.framesize, self.wanted = "VGA", SAFE_QUALITY
        self.floor: dict[str, int] = {}
        self.controls: list[dict] = []
        self.failed_captures = 0
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def boot(cls, url: str, camera_id: str) -> GuardedBoard:
        board = cls(await connect_camera(url), camera_id)
        await board.ws.send(json.dumps({"type": "hello", "camera_id": camera_id, "firmware": "1.1.0",
                                        "frame_size": board.framesize, "quality": board.quality}))
        await board.status()
        return board

    @property
    def quality(self) -> int:
        return max(self.wanted, self.floor.get(self.framesize, 0))

    async def status(self) -> None:
        refused = {"quality_refused": self.wanted} if self.quality != self.wanted else {}
        await self.ws.send(json.dumps({"type": "status", "fps_sent": 5.0, "frames_sent": 10, "firmware": "1.1.0",
                                       "frame_size": self.framesize, "quality": self.quality, "max_fps": 5.0,
                                       "settings": {}, "unsupported": [], **refused}))

    async def _read(self) -> None:
        async for text in self.ws:
            message = json.loads(text)
            if message.get("type") != "control":
                continue
            self.controls.append(message)
            self.framesize = message.get("framesize", self.framesize)
            self.wanted = message.get("quality", self.wanted)
            if self.framesize in LARGE and self.quality < SAFE_QUALITY:
                self.failed_captures += 1  # the capture times out; the guard steps the quality up
                self.floor[self.framesize] = SAFE_QUALITY
            await self.status()

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.ws.close()


async def _settings(http, srv, camera_id: str) -> dict:
    async with http.get(f"{srv.http}/api/cameras/{camera_id}/settings") as resp:
        assert resp.status == 200
        return await resp.json()


async def test_a_refused_quality_is_not_resent_on_every_hello(http):
    """Quality 4 at UXGA: the board steps to 12 and says so; after each reboot the server sends 12, not 4
    (no failed capture on boot); a new quality from the user goes out as asked."""
    async with running_server(None) as srv:
        board = await GuardedBoard.boot(srv.ws("porch"), "porch")
        try:
            await wait_for(lambda: srv.server.board.reported.get("porch", {}).get("framesize") == "VGA",
                           what="the first status")
            async with http.post(f"{srv.http}/api/cameras/porch/control",
                                 json={"framesize": "UXGA", "quality": 4, "vflip": True}) as resp:
                assert resp.status == 202
            await wait_for(lambda: srv.server.board.reported.get("porch", {}).get("framesize") == "UXGA",
                           what="the status after the refusal")
            assert board.failed_captures == 1
            for _reboot in range(2):
                await board.close()
                board = await GuardedBoard.boot(srv.ws("porch"), "porch")
                await wait_for(lambda: board.controls, what="the settings sent on hello")
                assert board.controls[0] == {"type": "control", "framesize": "UXGA", "quality": 12, "vflip": True}
                assert board.failed_captures == 0  # it never had to fail a capture again
            shown = await _settings(http, srv, "porch")
            assert shown["desired"]["quality"] == 4  # what the user asked for stays
            assert shown["quality_refused"] == {"quality": 4, "framesize": "UXGA", "quality_used": 12}
            # the user asks for another quality: it is sent as asked, and the refusal is forgotten
            async with http.post(f"{srv.http}/api/cameras/porch/control", json={"quality": 20}) as resp:
                assert resp.status == 202
            await wait_for(lambda: len(board.controls) == 2, what="the new quality")
            assert board.controls[1] == {"type": "control", "quality": 20}
            assert (await _settings(http, srv, "porch"))["quality_refused"] is None
            await board.close()
            board = await GuardedBoard.boot(srv.ws("porch"), "porch")
            await wait_for(lambda: board.controls, what="the settings sent on hello")
            assert board.controls[0]["quality"] == 20
        finally:
            await board.close()


async def test_a_refusal_of_another_quality_or_size_is_not_kept(http):
    """A quality_refused that is not the desired quality at the desired framesize changes nothing."""
    async with running_server(None) as srv:
        board = await GuardedBoard.boot(srv.ws("yard"), "yard")
        try:
            async with http.post(f"{srv.http}/api/cameras/yard/control", json={"framesize": "SVGA", "quality": 6}) as resp:
                assert resp.status == 202
            await wait_for(lambda: board.controls, what="the control message")
            for stale in ({"quality_refused": 4, "frame_size": "SVGA"}, {"quality_refused": 6, "frame_size": "UXGA"},
                          {"quality_refused": "6", "frame_size": "SVGA"}):
                await board.ws.send(json.dumps({"type": "status", "quality": 12, "settings": {}, **stale}))
            # a last status marks that those were handled (in order)
            await board.ws.send(json.dumps({"type": "status", "frame_size": "SVGA", "quality": 6, "max_fps": 7.0,
                                            "settings": {}}))
            await wait_for(lambda: srv.server.board.reported.get("yard", {}).get("fps") == 7.0, what="the last status")
            assert (await _settings(http, srv, "yard"))["quality_refused"] is None
            await board.close()
            board = await GuardedBoard.boot(srv.ws("yard"), "yard")
            await wait_for(lambda: board.controls, what="the settings sent on hello")
            assert board.controls[0] == {"type": "control", "framesize": "SVGA", "quality": 6}
        finally:
            await board.close()
