"""Where people and boards reach this server: the machine's LAN address, and the URLs shown at start-up.

A listener bound to 0.0.0.0 is reachable at every address of the machine, but 0.0.0.0 is no address
to type into a browser or into the firmware's config.h. The address to give is the one this machine
has on its LAN, found without sending anything and without internet.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from typing import Any, Callable, Sequence

import ifaddr

log = logging.getLogger("camserver.app")  # the start-up lines and warnings read as the server's

LOOPBACK = "127.0.0.1"
WILDCARDS = ("", "0.0.0.0", "::", "*")
# connect() on a UDP socket sends nothing: the kernel only picks the route, and with it the source
# address this machine would use toward a private address, which is its LAN address behind the
# default route. No packet leaves, no internet is needed.
ROUTE_PROBE = ("10.254.254.254", 9)


def _usable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast)


def interface_addresses() -> list[str]:
    """The IPv4 addresses of this machine's interfaces, loopback and link-local left out."""
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if ip.is_IPv4 and isinstance(ip.ip, str) and _usable(ip.ip):
                found.append(ip.ip)
    return found


def lan_address() -> str:
    """This machine's IPv4 address on its LAN: the default route's source address, else an interface's,
    else 127.0.0.1 (a machine with no network but loopback). Blocks briefly: call it in a thread."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(ROUTE_PROBE)
            address = str(probe.getsockname()[0])
        if _usable(address):
            return address
    except OSError:
        pass  # no route at all: fall back on the interfaces
    return next(iter(interface_addresses()), LOOPBACK)


def reachable_host(bind_host: str, lan: Callable[[], str] = lan_address) -> str:
    """The host to put in a URL for a listener bound to `bind_host`: the LAN address for a wildcard."""
    return lan() if bind_host in WILDCARDS else bind_host


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (127.x, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def startup_lines(camera_host: str, ws_port: int, page_host: str, http_port: int,
                  camera_ids: Sequence[str] = (), mdns_host: str | None = None) -> list[str]:
    """What a person needs once the server is up: the page, and what to put in the firmware's config.h.

    Args:
        camera_host, page_host: the hosts to show (reachable_host() of each listener's address).
        camera_ids: declared cameras, each shown with its own URL.
        mdns_host: the name advertised over mDNS (`camserver.local`), or None.
    """
    page = f"http://{_in_url(page_host)}:{http_port}/"
    lines = [f"open the page at {page}" + (f" (or http://{mdns_host}:{http_port}/)" if mdns_host else "")]
    for camera in camera_ids or ("<camera_id>",):
        lines.append(f"cameras connect to ws://{_in_url(camera_host)}:{ws_port}/ws/{camera}")
    define = f'#define SERVER_HOST "{camera_host}" and #define SERVER_PORT {ws_port}'
    lines.append(f"in the firmware's config.h: {define}" + (f' (or SERVER_HOST "{mdns_host}")' if mdns_host else ""))
    if is_loopback(camera_host) or is_loopback(page_host):
        # bound to loopback, or bound to every interface on a machine with no network address (yet)
        lines.append("only this machine can reach these addresses: to let boards and phones in, set "
                     "ingest.host and http.host to \"0.0.0.0\" and connect this machine to the LAN")
    return lines


def listen_error(exc: OSError, side: str, host: str, port: int, flag: str, key: str) -> str:
    """One line: which listener could not open, why, and the flag and config key that move it."""
    why = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's own text repeats every address tried
    return (f"cannot listen on {host}:{port} for the {side}s: {why}; choose another port with "
            f"{flag} PORT (or {key} in config.toml; with make: make run ARGS=\"{flag} PORT\")")


def warn_if_open(ingest: Any, http: Any) -> None:
    """A warning for each port that listens beyond loopback with no token (`[ingest]`, `[http]` tables)."""
    for side, host, protected, key, risk in (
        ("camera", ingest.host, bool(ingest.token), "ingest.token", "publish frames as any camera"),
        ("viewer", http.host, bool(http.token or http.users), "http.token or http.users", "watch every camera"),
    ):
        if not protected and not is_loopback(host):
            log.warning("the %s port listens on %s with no token: anyone who reaches it can %s; set %s",
                        side, host, risk, key)
