"""One supervised lifecycle: a stage task that dies is logged, named in /healthz, and stops the process."""

from __future__ import annotations

import asyncio
import logging
import textwrap
import time

from camserver.app import CamServer
from camserver.supervise import Supervisor, cancel_and_wait
from conftest import WAIT_S, FakeDetector, connect_camera, make_config, make_jpeg, running_server
from serverproc import ServerProcess


async def test_scheduler_dying_turns_healthz_503_naming_the_stage(http, caplog):
    """An exception inside the scheduler's task: logged with its traceback, /healthz 503 names the stage."""
    async with running_server(FakeDetector()) as srv:

        def boom() -> None:
            raise RuntimeError("scheduler bug")

        srv.server.scheduler._dispatch = boom  # the next frame makes the scheduler task raise
        async with http.get(f"{srv.http}/healthz") as resp:
            assert resp.status == 200
        with caplog.at_level(logging.ERROR, logger="camserver.supervise"):
            cam = await connect_camera(srv.ws("c"))
            await cam.send(make_jpeg(1))
            await asyncio.wait_for(srv.server.supervisor.failure.wait(), WAIT_S)
        async with http.get(f"{srv.http}/healthz") as resp:
            assert resp.status == 503
            health = await resp.json()
        assert health["status"] == "failed" and health["failed_stage"] == "detect"
        record = next(r for r in caplog.records if "stage detect" in r.getMessage())
        assert record.exc_info is not None and "scheduler bug" in str(record.exc_info[1])
        await cam.close()


CHILD = textwrap.dedent("""
    import sys
    from camserver.cli import main
    from camserver.detect.scheduler import DetectionScheduler

    def boom(self):
        raise RuntimeError("scheduler bug")

    DetectionScheduler._dispatch = boom  # dies on the first frame
    sys.argv[0] = "camserver"
    raise SystemExit(main(sys.argv[1:]))
""")


async def test_process_exits_non_zero_within_5_s_when_a_stage_dies(tmp_path):
    """The real CLI: the scheduler task raises on the first frame; the process exits 1 within 5 s, naming the stage."""
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    server = await ServerProcess.start("--model", "none", cwd=tmp_path, module="child", timeout=WAIT_S * 3)
    try:
        cam = await connect_camera(server.ws("c"))
        await cam.send(make_jpeg(1))
        sent = time.monotonic()
        async with asyncio.timeout(5):
            rc = await server.proc.wait()
        assert time.monotonic() - sent < 5
    finally:
        if server.proc.returncode is None:
            server.proc.kill()
        await server.stop()
    log = "".join(server.lines)
    assert rc == 1, log
    assert "stage detect" in log and "scheduler bug" in log and "the detect stage failed" in log


async def test_cancel_and_wait_awaits_every_task_and_logs_failures(caplog):
    """cancel_and_wait returns only once each task finished, and logs a task that raised while stopping."""
    finished = []

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)  # cleanup that takes a moment
            finished.append("slow")

    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    tasks = [asyncio.create_task(slow_to_stop()), asyncio.create_task(fails_on_cancel())]
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="camserver.supervise"):
        await cancel_and_wait(*tasks, None)
    assert finished == ["slow"] and all(t.done() for t in tasks)
    assert any("cleanup failed" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_supervisor_counts_a_returning_stage_as_failed_unless_stopping():
    """A stage task that returns while the server runs is a failure; cancelled at stop it is not."""
    sup = Supervisor()

    async def returns() -> None:
        return None

    sup.spawn("webhooks", returns())
    await asyncio.wait_for(sup.failure.wait(), WAIT_S)
    assert sup.failed == "webhooks"

    quiet = Supervisor()
    quiet.spawn("mqtt", asyncio.sleep(3600))
    await quiet.stop()
    assert quiet.failed is None and not quiet.tasks and not quiet.failure.is_set()



STAGES = (("storage", "database", "open", "close"), ("mqtt", "mqtt", "start", "stop"),
          ("notifications", "notifier", "start", "stop"), ("webhooks", "webhooks", "start", "stop"),
          ("events", "events", "start", "stop"), ("mute", "mute", "start", "stop"), ("board", "board", "start", "stop"),
          ("recording", "recorder", "start", "stop"), ("detector workers", "pool", "start", "stop"),
          ("cameras", "ingest", "start", "stop"), ("mdns", "mdns", "start", "stop"))


def _watch_stages(server: CamServer, calls: list[tuple[str, str]], failing: str | None = None) -> None:
    """Record each stage's start and stop as they are called; the `failing` stage's stop raises."""

    def wrap(name: str, obj: object, attr: str, what: str) -> None:
        original = getattr(obj, attr)

        def called(*args: object, **kwargs: object) -> object:
            calls.append((what, name))
            if what == "stop" and name == failing:
                raise RuntimeError(f"{name} cannot stop")
            return original(*args, **kwargs)

        setattr(obj, attr, called)

    for name, attr, start, stop in STAGES:
        wrap(name, getattr(server, attr), start, "start")
        wrap(name, getattr(server, attr), stop, "stop")


async def test_stages_stop_in_the_reverse_of_their_start():
    """Each stage pushed its stop as it started: stopping is the start order backwards, every stage once."""
    calls: list[tuple[str, str]] = []
    server = CamServer(make_config(), detector_factory=lambda: FakeDetector())
    _watch_stages(server, calls)
    async with asyncio.timeout(WAIT_S * 3):
        async with server:
            started = [name for what, name in calls if what == "start"]
            assert sorted(started) == sorted(name for name, *_ in STAGES)
        stopped = [name for what, name in calls if what == "stop"]
    assert stopped == started[::-1]


async def test_a_stage_whose_stop_raises_leaves_the_rest_stopping(caplog):
    """The recorder's stop raises: the error is logged with its traceback, every stage after it stops all the same."""
    calls: list[tuple[str, str]] = []
    server = CamServer(make_config(), detector_factory=lambda: FakeDetector())
    _watch_stages(server, calls, failing="recording")
    with caplog.at_level(logging.ERROR, logger="camserver.app"):
        async with asyncio.timeout(WAIT_S * 3):
            async with server:
                pass
    stopped = [name for what, name in calls if what == "stop"]
    assert stopped[stopped.index("recording") + 1:] == ["board", "mute", "events", "webhooks", "notifications", "mqtt",
                                                       "storage"]
    record = next(r for r in caplog.records if "stopping recording failed" in r.getMessage())
    assert record.exc_info is not None and "recording cannot stop" in str(record.exc_info[1])
    assert not server.database.is_open and not server.ready
