"""Camera keepalive: pings every camera can answer, and a clear 1011 when one does not.

The ESP32 firmware (ours and the tutorial's) talks through ArduinoWebsockets 0.5.x, which copies
a ping's payload through an Arduino String before echoing it: the pong stops at the first NUL
byte (gilmaimon/ArduinoWebsockets#151). The websockets library pings with 4 random bytes and
accepts only an exact echo, so 1.55% of its pings went unanswered and dropped the camera.
Our pings carry an ASCII counter instead: no NUL, unique per connection, echoed intact.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed


def ping_payload(n: int) -> bytes:
    """The payload of the n-th ping: ASCII only, so no NUL byte, and unique per connection."""
    return b"cs%d" % n


async def keep_alive(ws: Connection, interval_s: float, timeout_s: float) -> bool:
    """Ping `ws` every `interval_s` until it closes.

    Returns:
        False as soon as a pong did not come within `timeout_s` (the caller closes with 1011);
        True when the connection closed by itself.
    """
    n = 0
    while True:
        n += 1
        await asyncio.sleep(interval_s)
        try:
            pong = await ws.ping(ping_payload(n))
        except ConnectionClosed:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await pong
        except TimeoutError:
            return False
        except ConnectionClosed:
            return True
