"""mDNS / DNS-SD: the server advertises itself on the LAN as `camserver.local` (http.mdns_name).

Two services point at the host name `<name>.local`, which answers with the machine's LAN address:

    <name>._http._tcp.local.        the page (port http.port, TXT path=/)
    <name>._camserver._tcp.local.   the camera port (ingest.port, TXT path=/ws/<camera_id>)

Phones and laptops open http://camserver.local:8080/ (Bonjour, Avahi and Windows resolve .local);
a board with SERVER_HOST "camserver.local" asks for the name with ESPmDNS. Everything runs on the
event loop through zeroconf's asyncio API, in a task of its own that start-up does not wait for. A
failure (no multicast on the network, a socket refused) is logged once and never stops the server.
Another machine that already answers as `<name>.local` makes this one take `<name>-2.local`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from contextlib import suppress
from typing import Any

from zeroconf import AddressResolverIPv4, IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from .. import __version__
from ..supervise import Spawn, cancel_and_wait
from .lan import WILDCARDS, lan_address

log = logging.getLogger(__name__)

PAGE_SERVICE = "_http._tcp.local."
CAMERA_SERVICE = "_camserver._tcp.local."
NAME_CHECK_MS = 1000  # how long to listen for another machine answering to our host name
GOODBYE_S = 2.0  # at shutdown: time to tell the LAN the services are gone


def _advertised_address(bind_host: str) -> str | None:
    """The IPv4 address to advertise for a listener bound to `bind_host`; None when it has none."""
    if bind_host in WILDCARDS:
        return lan_address()
    try:
        socket.inet_aton(bind_host)
        return bind_host
    except OSError:
        return None  # a host name or an IPv6 address: the LAN address stands in


class MdnsAdvertiser:
    """Advertises the page and the camera port over mDNS while the server runs.

    Args:
        name: the host label (`camserver` gives camserver.local).
        enabled: http.mdns.
    """

    def __init__(self, name: str, enabled: bool = True) -> None:
        self.name = name
        self.enabled = enabled
        self.state = "disabled" if not enabled else "starting"  # starting, advertised, failed
        self.problem = ""
        self.host = f"{name}.local"  # the host name in use (another machine may have made us take -2)
        self.services: list[str] = []  # the service instance names registered
        self._task: asyncio.Task[None] | None = None
        self._zc: AsyncZeroconf | None = None

    def health(self) -> dict[str, Any]:
        """What /healthz shows: state, host name, and why it failed."""
        return {"state": self.state, "host": self.host if self.enabled else None, "error": self.problem or None}

    def start(self, spawn: Spawn, http_host: str, http_port: int, ingest_host: str, ws_port: int) -> None:
        """Advertise in the background once both listeners are up."""
        if self.enabled:
            self._task = spawn("mdns", self._run(http_host, http_port, ingest_host, ws_port), "mdns")

    async def stop(self) -> None:
        """Say goodbye on the LAN (the services go from caches at once), then close the sockets."""
        await cancel_and_wait(self._task)
        self._task = None
        zc, self._zc = self._zc, None
        if zc is None:
            return
        try:
            async with asyncio.timeout(GOODBYE_S):
                await zc.async_unregister_all_services()
        except Exception as exc:  # a network gone meanwhile: nothing to say goodbye on
            log.debug("mDNS goodbye failed: %s", exc)
        with suppress(Exception):
            await zc.async_close()

    async def _run(self, http_host: str, http_port: int, ingest_host: str, ws_port: int) -> None:
        try:
            page_ip, camera_ip = await asyncio.to_thread(
                lambda: (_advertised_address(http_host) or lan_address(), _advertised_address(ingest_host) or lan_address()))
            self._zc = AsyncZeroconf(interfaces=sorted({page_ip, camera_ip}), ip_version=IPVersion.V4Only)
            self.host = await self._free_host_name({page_ip, camera_ip})
            server = self.host + "."
            for service, port, address, txt in (
                (PAGE_SERVICE, http_port, page_ip, {"path": "/"}),
                (CAMERA_SERVICE, ws_port, camera_ip, {"path": "/ws/<camera_id>", "version": __version__}),
            ):
                info = AsyncServiceInfo(service, f"{self.name}.{service}", port=port, properties=txt, server=server,
                                        addresses=[socket.inet_aton(address)])
                announced = await self._zc.async_register_service(info, allow_name_change=True)
                await announced
                self.services.append(info.name)
        except Exception as exc:  # every failure: one line, and the server goes on without mDNS
            self.state, self.problem = "failed", str(exc) or type(exc).__name__
            log.warning("mDNS: cannot advertise %s (%s); use the address in the URLs above", self.host, self.problem)
            await self._close_quietly()
        else:
            self.state = "advertised"
            log.info("mDNS: advertised as %s (%s)", self.host, ", ".join(self.services))
        await asyncio.Event().wait()  # the stage lives until stop() cancels it

    async def _free_host_name(self, ours: set[str]) -> str:
        """`<name>.local`, or `<name>-N.local` when another machine already answers to it."""
        assert self._zc is not None
        for n in range(1, 10):
            host = f"{self.name}.local" if n == 1 else f"{self.name}-{n}.local"
            resolver = AddressResolverIPv4(host + ".")
            if not await resolver.async_request(self._zc.zeroconf, NAME_CHECK_MS):
                return host
            theirs = set(resolver.parsed_addresses(IPVersion.V4Only))
            if theirs <= ours:
                return host  # this machine (another camserver on other ports, or our last run)
            log.warning("mDNS: %s is taken by %s; trying the next name", host, ", ".join(sorted(theirs)))
        raise RuntimeError(f"{self.name}.local to {self.name}-9.local are all taken")

    async def _close_quietly(self) -> None:
        zc, self._zc = self._zc, None
        if zc is not None:
            with suppress(Exception):
                await zc.async_close()
