"""A broker lost while camserver is still subscribing: noticed at once, not after the 10 s operation timeout.

No mosquitto here: a bare TCP listener plays a broker that accepts the connection (CONNACK) and then
never acknowledges a subscription, the moment a real broker killed right after the handshake leaves.
"""

from __future__ import annotations

import asyncio
import time

from camserver.app import CamServer
from conftest import ScriptedDetector, make_config, wait_for


class SilentBroker:
    """Answers CONNECT with CONNACK, then reads and ignores everything; `drop()` closes every connection."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> SilentBroker:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        self.drop()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        first = await reader.read(1024)
        if first[:1] == b"\x10":  # CONNECT
            writer.write(b"\x20\x02\x00\x00")  # CONNACK, session not present, accepted
            await writer.drain()
            self.connected.set()
        while await reader.read(1024):
            pass  # SUBSCRIBE, PUBLISH, PINGREQ: never answered

    def drop(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()


async def test_broker_lost_during_the_subscriptions_is_noticed_within_seconds():
    async with SilentBroker() as broker:
        config = make_config(mqtt={"host": "127.0.0.1", "port": broker.port})
        async with CamServer(config, detector_factory=lambda: ScriptedDetector(lambda cam, seq: [])) as server:
            await asyncio.wait_for(broker.connected.wait(), 10)
            await wait_for(lambda: server.mqtt.state == "connected", timeout=10, what="connected")
            await asyncio.sleep(0.5)  # camserver is now waiting for a SUBACK that never comes
            broker.drop()
            lost = time.monotonic()
            await wait_for(lambda: server.mqtt.state == "disconnected", timeout=8, what="the lost broker noticed")
            assert time.monotonic() - lost < 5
