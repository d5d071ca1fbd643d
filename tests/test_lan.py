"""Finding the server on a LAN: the start-up URLs with the machine's address, and mDNS with a real zeroconf browser."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import socket

import pytest
from zeroconf import AddressResolverIPv4, IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from camserver.app import CamServer
from camserver.config import ConfigError, from_mapping
from camserver.integrations import mdns as mdns_module
from camserver.integrations.lan import interface_addresses, lan_address, startup_lines
from camserver.integrations.mdns import CAMERA_SERVICE, PAGE_SERVICE
from conftest import WAIT_S, FakeDetector, connect_camera, make_config, make_jpeg, wait_for
from serverproc import ServerProcess


def unique_name() -> str:
    return f"camtest-{secrets.token_hex(4)}"  # other test runs may advertise on this machine's loopback too


def test_lan_address_is_an_address_of_this_machine():
    """The address shown is one of this machine's interface addresses, never loopback while there is another."""
    address = lan_address()
    others = interface_addresses()
    if others:
        assert address in others
    else:
        assert address == "127.0.0.1"


def test_startup_lines_for_declared_cameras_and_a_loopback_listener():
    """Each declared camera gets its own URL; a loopback address is said to be reachable from this machine only."""
    lines = startup_lines("192.168.1.20", 3001, "192.168.1.20", 8080, ("door", "yard"), "camserver.local")
    assert lines[0] == "open the page at http://192.168.1.20:8080/ (or http://camserver.local:8080/)"
    assert "cameras connect to ws://192.168.1.20:3001/ws/door" in lines
    assert "cameras connect to ws://192.168.1.20:3001/ws/yard" in lines
    assert any('#define SERVER_HOST "192.168.1.20"' in line and "SERVER_PORT 3001" in line for line in lines)
    assert not any("only this machine" in line for line in lines)
    local = startup_lines("127.0.0.1", 3001, "127.0.0.1", 8080)
    assert "cameras connect to ws://127.0.0.1:3001/ws/<camera_id>" in local
    assert local[-1].startswith("only this machine can reach these addresses")


@pytest.mark.parametrize("name", ["cam server", "-cam", "cam-", "cam.local", "", "x" * 64])
def test_a_bad_mdns_name_names_the_key(name):
    """http.mdns_name must be one host label: the error names http.mdns_name."""
    with pytest.raises(ConfigError) as info:
        from_mapping({"http": {"mdns_name": name}})
    assert info.value.key == "http.mdns_name"


async def test_startup_urls_carry_the_lan_address_and_work(tmp_path, http):
    """Bound to 0.0.0.0, the log shows the page and ws:// URLs with the LAN address, and both answer there."""
    server = await ServerProcess.start("--host", "0.0.0.0", "--model", "none", cwd=tmp_path, timeout=WAIT_S * 3)
    try:
        log = "".join(server.lines)
        page = re.search(r"open the page at (http://\S+/)", log)
        camera = re.search(r"cameras connect to ws://(\S+):(\d+)/ws/<camera_id>", log)
        assert page and camera, log
        host = camera[1]
        assert host == lan_address() and host != "0.0.0.0", log
        assert int(camera[2]) == server.ws_port
        assert f'#define SERVER_HOST "{host}" and #define SERVER_PORT {server.ws_port}' in log
        cam = await connect_camera(f"ws://{host}:{server.ws_port}/ws/door")
        await cam.send(make_jpeg(1))
        async with http.get(page[1]) as resp:
            assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
        async with http.get(f"{page[1]}api/cameras") as resp:
            assert [c["id"] for c in await resp.json()] == ["door"]
        await cam.close()
    finally:
        assert await server.stop() == 0


async def resolve(zc: AsyncZeroconf, service: str, name: str) -> AsyncServiceInfo:
    info = AsyncServiceInfo(service, f"{name}.{service}")
    assert await info.async_request(zc.zeroconf, WAIT_S * 1000), f"{name}.{service} not found"
    return info


async def test_mdns_advertises_page_and_camera_port_and_says_goodbye():
    """A zeroconf browser on loopback finds both services and the host name; they are gone when the server stops."""
    name = unique_name()
    config = make_config(http={"mdns": True, "mdns_name": name})
    browser_zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    removed: list[str] = []

    def changed(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Removed:
            removed.append(name)

    try:
        async with CamServer(config, detector_factory=lambda: FakeDetector()) as server:
            await wait_for(lambda: server.mdns.state == "advertised", what="advertised")
            page = await resolve(browser_zc, PAGE_SERVICE, name)
            assert (page.port, page.server) == (server.http_port, f"{name}.local.")
            assert page.parsed_addresses() == ["127.0.0.1"] and page.properties[b"path"] == b"/"
            camera = await resolve(browser_zc, CAMERA_SERVICE, name)
            assert (camera.port, camera.server) == (server.ws_port, f"{name}.local.")
            assert camera.properties[b"path"] == b"/ws/<camera_id>"
            host = AddressResolverIPv4(f"{name}.local.")  # what the board's MDNS.queryHost asks
            assert await host.async_request(browser_zc.zeroconf, WAIT_S * 1000)
            assert host.parsed_addresses() == ["127.0.0.1"]
            assert server.health()["mdns"] == {"state": "advertised", "host": f"{name}.local", "error": None}
            browser = AsyncServiceBrowser(browser_zc.zeroconf, [PAGE_SERVICE, CAMERA_SERVICE], handlers=[changed])
        await wait_for(lambda: {f"{name}.{PAGE_SERVICE}", f"{name}.{CAMERA_SERVICE}"} <= set(removed),
                       what="goodbye for both services")
        await browser.async_cancel()
    finally:
        await browser_zc.async_close()


async def test_a_name_another_machine_answers_to_is_not_taken():
    """When another machine answers as NAME.local, the server advertises NAME-2.local instead."""
    name = unique_name()
    other = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        info = AsyncServiceInfo("_http._tcp.local.", f"other-{name}._http._tcp.local.", port=80,
                                server=f"{name}.local.", addresses=[socket.inet_aton("10.9.8.7")])
        await (await other.async_register_service(info))
        config = make_config(http={"mdns": True, "mdns_name": name})
        async with CamServer(config, detector_factory=lambda: FakeDetector()) as server:
            await wait_for(lambda: server.mdns.state == "advertised", what="advertised")
            assert server.mdns.host == f"{name}-2.local"
            assert (await resolve(other, PAGE_SERVICE, name)).server == f"{name}-2.local."
    finally:
        await other.async_close()


async def test_an_mdns_failure_is_one_log_line_and_the_server_streams(monkeypatch, caplog, http):
    """zeroconf failing (no multicast here) logs one warning; the server starts, streams and is healthy."""
    def broken(*args, **kwargs):
        raise OSError(19, "No such device")

    monkeypatch.setattr(mdns_module, "AsyncZeroconf", broken)
    config = make_config(http={"mdns": True, "mdns_name": unique_name()})
    with caplog.at_level(logging.INFO, logger="camserver.integrations.mdns"):
        async with CamServer(config, detector_factory=lambda: FakeDetector()) as server:
            await wait_for(lambda: server.mdns.state == "failed", what="failed")
            cam = await connect_camera(f"ws://127.0.0.1:{server.ws_port}/ws/door")
            await cam.send(make_jpeg(1))
            await wait_for(lambda: (c := server.hub.get("door")) is not None and c.frames_processed >= 1)
            async with http.get(f"http://127.0.0.1:{server.http_port}/healthz") as resp:
                health = await resp.json()
            assert resp.status == 200 and health["mdns"]["state"] == "failed"
            assert "No such device" in health["mdns"]["error"]
            await cam.close()
    lines = [r for r in caplog.records if r.name == "camserver.integrations.mdns"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING, [r.getMessage() for r in lines]


async def test_mdns_off_starts_nothing(monkeypatch):
    """http.mdns = false: no zeroconf at all."""
    monkeypatch.setattr(mdns_module, "AsyncZeroconf", lambda *a, **k: pytest.fail("zeroconf started"))
    async with CamServer(make_config(http={"mdns": False}), detector_factory=lambda: FakeDetector()) as server:
        assert server.mdns.health() == {"state": "disabled", "host": None, "error": None}
        await asyncio.sleep(0)  # nothing was spawned that could start it later
        assert server.mdns._task is None
