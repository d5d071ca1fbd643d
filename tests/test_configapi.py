"""/api/config through a real server and aiohttp client: GET redacts secrets; PATCH writes the shipped
config.toml back with every comment, keeps a backup, refuses a stale version (412) and bad values (400,
every line), is an admin's only; a drawn zone applies live and survives a restart."""

from __future__ import annotations

import contextlib
import shutil
import time
import tomllib
from pathlib import Path

import aiohttp
import pytest

from camserver.app import CamServer
from camserver.config.writeback import HIDDEN, ConfigFile, PatchRefused, redact
from camserver.detect import BackendInfo, Detection
from conftest import WAIT_S, connect_camera, feeding, wait_for
from serverproc import ServerProcess

SHIPPED = Path(__file__).resolve().parent.parent / "config.toml"
ADMIN = "admin-token-123"
VIEWER = "viewer-token-456"
MQTT_PASSWORD = "mqtt-pass-789"
NTFY = "ntfys://alice:ntfy-pass-000@ntfy.example/door"
MERGE = "application/merge-patch+json"
WHOLE_FRAME = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


class PersonDetector:
    """A person in every frame, in the frame's upper left."""

    info = BackendInfo("person", "cpu", "fp32", 1)

    def detect(self, images):
        return [[Detection(0, "person", 0.9, (20.0, 20.0, 100.0, 120.0))] for _ in images]

    def draw(self, image, detections):
        return image


def shipped_copy(tmp_path: Path) -> ConfigFile:
    """The shipped config.toml in tmp_path, with a secret or two in it, and the test's ports and storage as flags."""
    path = tmp_path / "config.toml"
    shutil.copyfile(SHIPPED, path)
    overrides = {"ingest": {"host": "127.0.0.1", "port": 0}, "storage": {"dir": str(tmp_path / "data")},
                 "http": {"host": "127.0.0.1", "port": 0, "mdns": False, "token": VIEWER, "admin_token": ADMIN},
                 "motion": {"enabled": False}}
    file = ConfigFile(path, overrides)
    file.apply({"mqtt": {"password": MQTT_PASSWORD}, "notify": [{"urls": [NTFY]}]}, file.read()[1])
    for backup in tmp_path.glob("config.toml.*.bak"):
        backup.unlink()  # the tests count their own backups
    return file


@contextlib.asynccontextmanager
async def served(file: ConfigFile):
    config = file.effective(tomllib.loads(file.path.read_text()))
    async with CamServer(config, detector_factory=PersonDetector, config_file=file) as server:
        yield server, f"http://127.0.0.1:{server.http_port}"


def as_admin(**headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}", **headers}


async def read_config(http: aiohttp.ClientSession, base: str) -> dict:
    async with http.get(f"{base}/api/config", headers=as_admin()) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def patch(http: aiohttp.ClientSession, base: str, body: dict, version: str) -> tuple[int, dict]:
    async with http.patch(f"{base}/api/config", json=body,
                          headers=as_admin(**{"Content-Type": MERGE, "If-Match": version})) as resp:
        return resp.status, await resp.json()


def comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


async def test_get_redacts_every_secret_and_gives_version_and_schema(tmp_path, http):
    """GET: the file and effective config with tokens, the MQTT password and the Apprise URL's credentials
    redacted; the version is the file's hash; the schema is the models'."""
    file = shipped_copy(tmp_path)
    async with served(file) as (_, base):
        async with http.get(f"{base}/api/config", headers=as_admin()) as resp:
            assert resp.status == 200
            text = await resp.text()
        for secret in (ADMIN, VIEWER, MQTT_PASSWORD, "ntfy-pass-000"):
            assert secret not in text, f"{secret} is shown"
        body = await read_config(http, base)
    assert body["version"] == file.read()[1]
    assert body["file"]["mqtt"]["password"] == HIDDEN
    assert body["effective"]["http"]["admin_token"] == HIDDEN and body["effective"]["http"]["token"] == HIDDEN
    assert body["file"]["notify"][0]["urls"][0].startswith("ntfys://")
    assert body["file"]["events"]["labels"] == ["person"], "the rest is shown as it is"
    assert "events" in body["schema"]["properties"]
    assert "events.zones" in body["live_keys"]


async def test_a_viewer_may_neither_read_nor_patch_the_config(tmp_path, http):
    """The viewer token: 403 on GET and PATCH; no credential: 401; the file is untouched."""
    file = shipped_copy(tmp_path)
    before = file.path.read_bytes()
    async with served(file) as (_, base):
        viewer = {"Authorization": f"Bearer {VIEWER}"}
        async with http.get(f"{base}/api/config", headers=viewer) as resp:
            assert resp.status == 403
        async with http.patch(f"{base}/api/config", json={"events": {"cooldown_s": 5.0}},
                              headers={**viewer, "Content-Type": MERGE, "If-Match": file.read()[1]}) as resp:
            assert resp.status == 403
        async with http.get(f"{base}/api/config") as resp:
            assert resp.status == 401
    assert file.path.read_bytes() == before


async def test_patch_keeps_every_comment_of_the_shipped_file_a_backup_and_the_secrets(tmp_path, http):
    """A patch of three tables: every comment line of the shipped config.toml is still there, in order; the
    previous file is config.toml.1.bak; redacted secrets sent back unchanged keep the file's values."""
    file = shipped_copy(tmp_path)
    before = file.path.read_text()
    async with served(file) as (_, base):
        current = await read_config(http, base)
        body = {"events": {"cooldown_s": 5.0, "zones": [{"camera": "door", "name": "porch", "points": WHOLE_FRAME}]},
                "record": {"retain_days": 4.5},
                "mqtt": current["file"]["mqtt"], "notify": current["file"]["notify"]}  # redacted, sent back
        status, answer = await patch(http, base, body, current["version"])
        assert status == 200, answer
    after = file.path.read_text()
    assert comment_lines(after) == comment_lines(before)
    data = tomllib.loads(after)
    assert data["events"]["cooldown_s"] == 5.0 and data["record"]["retain_days"] == 4.5
    assert data["events"]["zones"][0]["name"] == "porch"
    assert data["mqtt"]["password"] == MQTT_PASSWORD and data["notify"][0]["urls"] == [NTFY]
    assert HIDDEN not in after
    assert (tmp_path / "config.toml.1.bak").read_text() == before
    assert answer["version"] == file.read()[1] != current["version"]
    assert answer["applied_live"] == ["events.zones", "record.retain_days"]  # web/liveapply.py takes both
    assert set(answer["restart_needed"]) == {"events.cooldown_s"}


async def test_a_stale_version_is_refused_and_loses_nothing(tmp_path, http):
    """Two writers read the same version: the first wins, the second gets 412 with the new version, and the
    first's change stays."""
    file = shipped_copy(tmp_path)
    async with served(file) as (_, base):
        version = (await read_config(http, base))["version"]
        status, first = await patch(http, base, {"events": {"cooldown_s": 7.0}}, version)
        assert status == 200, first
        status, second = await patch(http, base, {"events": {"cooldown_s": 9.0}}, version)
        assert status == 412, second
        assert second["version"] == first["version"]
        async with http.patch(f"{base}/api/config", json={"events": {"cooldown_s": 9.0}},
                              headers=as_admin(**{"Content-Type": MERGE})) as resp:
            assert resp.status == 428, "no If-Match: no blind write"
    assert tomllib.loads(file.path.read_text())["events"]["cooldown_s"] == 7.0


async def test_three_mistakes_give_every_one_line_error_and_write_nothing(tmp_path, http):
    """A patch with three bad values: 400 with the config's own line for each, the file and backups untouched."""
    file = shipped_copy(tmp_path)
    before = file.path.read_bytes()
    async with served(file) as (_, base):
        version = (await read_config(http, base))["version"]
        status, body = await patch(http, base, {"events": {"min_score": 7, "zones": [{"camera": "door", "name": "x",
                                                                                       "points": [[0, 0], [2, 0]]}]},
                                                "record": {"mode": "sometimes"}}, version)
    assert status == 400, body
    problems = body["problems"]
    assert len(problems) == 3, problems
    assert any(line.startswith("config error: events.min_score = 7") for line in problems)
    assert any("events.zones[0].points" in line for line in problems)
    assert any(line.startswith("config error: record.mode = 'sometimes'") for line in problems)
    assert file.path.read_bytes() == before
    assert not list(tmp_path.glob("config.toml.*.bak"))


async def test_a_drawn_zone_applies_to_the_running_event_and_survives_a_restart(tmp_path, http):
    """A person's event is in progress with no zone; a PATCH draws a zone over the frame: within 2 s the event
    is in it, without a restart; the server started again from the file has the zone."""
    file = shipped_copy(tmp_path)
    async with served(file) as (server, base):
        zoned: list[float] = []
        server.events.listeners.append(
            lambda change: "porch" in change.after.get("current_zones", []) and zoned.append(time.monotonic()))
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        try:
            async with feeding(cam, fps=10):
                await wait_for(lambda: bool(server.events.rules.get("door") and server.events.rules["door"].objects),
                               what="the person tracked")
                version = (await read_config(http, base))["version"]
                status, body = await patch(http, base, {"events": {"zones": [
                    {"camera": "door", "name": "porch", "points": WHOLE_FRAME}]}}, version)
                patched_at = time.monotonic()
                assert status == 200 and body["applied_live"] == ["events.zones"], body
                assert body["restart_needed"] == []
                await wait_for(lambda: bool(zoned), timeout=WAIT_S, what="the event in the drawn zone")
        finally:
            await cam.close()
        assert zoned[0] - patched_at < 2.0, f"took {zoned[0] - patched_at:.2f} s"
        async with http.get(f"{base}/api/zones?camera=door", headers=as_admin()) as resp:
            assert [z["name"] for z in (await resp.json())["zones"]] == ["porch"]
    async with served(file) as (_, base):
        async with http.get(f"{base}/api/zones?camera=door", headers=as_admin()) as resp:
            assert [z["name"] for z in (await resp.json())["zones"]] == ["porch"]


@pytest.mark.parametrize("body", [[1, 2], {"events": {"labels": [None]}}])
async def test_a_patch_that_is_no_merge_patch_is_refused(tmp_path, http, body):
    """An array, or null inside an array: 400, nothing written."""
    file = shipped_copy(tmp_path)
    before = file.path.read_bytes()
    async with served(file) as (_, base):
        async with http.patch(f"{base}/api/config", json=body,
                              headers=as_admin(**{"Content-Type": MERGE, "If-Match": file.read()[1]})) as resp:
            assert resp.status == 400, await resp.text()
    assert file.path.read_bytes() == before


def test_a_redacted_url_that_moved_keeps_its_secret_and_an_ambiguous_one_is_refused(tmp_path):
    """The first [[notify]] removed, the second sent back redacted at its new place: the file keeps the second's
    real URL; a redacted form two URLs share, or the bare marker, is refused and nothing is written."""
    file = shipped_copy(tmp_path)
    second = "ntfys://bob:other-pass@push.example/yard"
    file.apply({"notify": [{"urls": [NTFY]}, {"urls": [second]}]}, file.read()[1])
    shown = redact(tomllib.loads(file.path.read_text()))["notify"]
    file.apply({"notify": [shown[1]]}, file.read()[1])
    assert tomllib.loads(file.path.read_text())["notify"] == [{"urls": [second]}]

    twin = "ntfys://carol:third-pass@push.example/gate"
    file.apply({"notify": [{"urls": [second]}, {"urls": [twin]}]}, file.read()[1])
    before = file.path.read_bytes()
    with pytest.raises(PatchRefused):
        file.apply({"notify": [{"urls": [second]}, {"urls": [twin]}, {"urls": ["ntfys://push.example"]}]},
                   file.read()[1])  # a third table: which of the two did it stand for?
    with pytest.raises(PatchRefused):
        file.apply({"http": {"admin_token": HIDDEN}}, file.read()[1])
    assert file.path.read_bytes() == before


async def test_the_command_line_server_writes_back_its_own_config_toml_and_reads_it_after_a_restart(tmp_path, http):
    """`python -m camserver` in a folder with the shipped config.toml (flags for ports and storage): the zone a
    PATCH draws is in ./config.toml and the process started again serves it; the flags were not written."""
    shutil.copyfile(SHIPPED, tmp_path / "config.toml")
    shipped = (tmp_path / "config.toml").read_text()
    args = ("--model", "none", "--viewer-token", VIEWER)
    server = await ServerProcess.start(*args, cwd=tmp_path, timeout=WAIT_S * 6)
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        viewer = {"Authorization": f"Bearer {VIEWER}"}
        async with http.get(f"{base}/api/config", headers=viewer) as resp:  # no admin token: viewers may write
            assert resp.status == 200, await resp.text()
            version = (await resp.json())["version"]
        zone = {"camera": "door", "name": "porch", "points": WHOLE_FRAME}
        async with http.patch(f"{base}/api/config", json={"events": {"zones": [zone]}},
                              headers={**viewer, "Content-Type": MERGE, "If-Match": version}) as resp:
            assert resp.status == 200, await resp.text()
    finally:
        assert await server.stop() == 0, "".join(server.lines)
    written = (tmp_path / "config.toml").read_text()
    assert comment_lines(written) == comment_lines(shipped)
    assert VIEWER not in written and "port = 0" not in written, "the flags stay flags"
    server = await ServerProcess.start(*args, cwd=tmp_path, timeout=WAIT_S * 6)
    try:
        async with http.get(f"http://127.0.0.1:{server.http_port}/api/zones?camera=door",
                            headers={"Authorization": f"Bearer {VIEWER}"}) as resp:
            assert [z["name"] for z in (await resp.json())["zones"]] == ["porch"]
    finally:
        assert await server.stop() == 0, "".join(server.lines)


async def test_an_object_mask_drawn_over_a_tracked_person_applies_live(tmp_path, http):
    """A person's event is in progress; a PATCH draws an object mask over the whole frame: its detections are
    dropped at once, so the event ends (max_disappeared_s later) without a restart."""
    file = shipped_copy(tmp_path)
    file = ConfigFile(file.path, {**file.overrides, "events": {"max_disappeared_s": 0.5}})
    async with served(file) as (server, base):
        ended: list[float] = []
        server.events.listeners.append(lambda change: change.type == "end" and ended.append(time.monotonic()))
        cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
        try:
            async with feeding(cam, fps=10):
                await wait_for(lambda: server.events.events_total > 0, what="the person's event")
                version = (await read_config(http, base))["version"]
                status, body = await patch(http, base, {"events": {"masks": [{"camera": "door",
                                                                              "points": WHOLE_FRAME}]}}, version)
                patched_at = time.monotonic()
                assert status == 200 and body["applied_live"] == ["events.masks"], body
                await wait_for(lambda: bool(ended), timeout=WAIT_S, what="the masked person's event to end")
        finally:
            await cam.close()
    assert ended[0] - patched_at < 0.5 + 2.0, f"took {ended[0] - patched_at:.2f} s"


def test_backups_are_bounded_and_the_newest_is_the_file_before_the_last_write(tmp_path):
    """Seven writes keep five backups: .1.bak is the file before the last write, .5.bak the oldest kept."""
    file = shipped_copy(tmp_path)
    texts = []
    for n in range(7):
        texts.append(file.path.read_text())
        file.apply({"events": {"cooldown_s": float(n + 1)}}, f'W/"{file.read()[1]}"')
    assert sorted(p.name for p in tmp_path.glob("config.toml.*.bak")) == [f"config.toml.{n}.bak" for n in range(1, 6)]
    assert (tmp_path / "config.toml.1.bak").read_text() == texts[-1]
    assert (tmp_path / "config.toml.5.bak").read_text() == texts[-5]


def test_a_patch_into_an_inline_table_and_a_new_per_camera_table(tmp_path):
    """http.users is `users = {}` in the shipped file: a user table goes inside it inline; [cameras.door.motion]
    is created; the file loads with both."""
    file = shipped_copy(tmp_path)
    patched = file.apply({"http": {"users": {"alice": {"password": "alice-pass-1", "role": "admin"}, "bob": "bob-pass-2"}},
                          "cameras": {"door": {"motion": {"threshold": 12}}}}, file.read()[1])
    assert patched.changed == ["cameras.door.motion", "http.users"] and patched.restart == ["cameras.door.motion"]
    assert patched.live == ["http.users"]  # users apply live (web/session.py's update)
    config = file.effective(tomllib.loads(file.path.read_text()))
    assert config.http.admins == frozenset({"alice"}) and config.motion_for("door").threshold == 12
