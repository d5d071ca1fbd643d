"""A flood of HTTP requests whose declared body never comes, as its own process (so that the server
under test keeps its core): `python bodyless.py PORT SECONDS CONNECTIONS SOURCE...`.

Each of CONNECTIONS tasks opens a connection from one of the SOURCE addresses (round robin), sends a
login's headers with `Content-Length: 4000` and no body, waits for the server to close it, and opens
another at once, for SECONDS. Prints one JSON line at the end: how many connections it made and the
longest any was held.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

HEAD = (b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4000\r\n\r\n")


async def hold(port: int, source: str, until: float, held: list[float], refused: list[int]) -> None:
    """Hold connections from `source` one after the other until the monotonic time `until`."""
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 10)
        except (TimeoutError, OSError):
            refused[0] += 1
            await asyncio.sleep(0.05)
            continue
        opened = time.monotonic()
        try:
            writer.write(HEAD)
            await asyncio.wait_for(reader.read(), 120)  # until the server closes it
        except (TimeoutError, OSError):
            pass
        finally:
            held.append(time.monotonic() - opened)
            writer.close()


async def main(port: int, seconds: float, connections: int, sources: list[str]) -> None:
    """Run the flood and print {"connections": n, "longest_s": s, "connect_failures": n}."""
    held: list[float] = []
    refused = [0]
    until = time.monotonic() + seconds
    print(json.dumps({"started": True}), flush=True)
    await asyncio.gather(*(hold(port, sources[n % len(sources)], until, held, refused) for n in range(connections)))
    print(json.dumps({"connections": len(held), "longest_s": max(held, default=0.0), "connect_failures": refused[0]}),
          flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
