"""An embedded MQTT 3.1.1 broker (amqtt) for one site or the demo; production uses Mosquitto or EMQX.

amqtt does not speak MQTT 5, shared subscriptions, or offline queues for persistent sessions, and does not
enforce keepalive: good enough for a demo on one machine, not for a zone in production.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from collector.threads import named
from zonewatch.extras import require

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """Run amqtt on its own event loop in a thread; ``start()`` returns when it listens."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = named(self._loop.run_forever, "zw-broker")
        self._broker: Any = None

    def start(self, timeout: float = 10.0) -> None:
        """Start listening on host:port; raise RuntimeError naming the address if it cannot, MissingExtra (from
        ``zonewatch.extras``) without amqtt."""
        require("amqtt.broker", "zonewatch-collector run with no `mqtt` section (its embedded broker)")
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

        async def _start() -> None:
            self._broker = Broker(config)
            await self._broker.start()

        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(_start(), self._loop).result(timeout)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"embedded MQTT broker could not listen on {self.host}:{self.port}: {exc}") from exc
        log.info("embedded MQTT 3.1.1 broker listening on %s:%d", self.host, self.port)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down and end its thread."""
        if self._broker is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(timeout)
            except Exception as exc:  # noqa: BLE001 - shutting down must go on
                log.warning("embedded broker shutdown: %s", exc)
            self._broker = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
