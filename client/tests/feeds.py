"""A Feed the tests drive by hand, and waiting for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sm_client.state.feed import Handler, Message, Resync, Stop


class RecordingFeed:
    """A Feed the test drives by hand: it records topics and delivers what the test sends."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[Handler]] = {}
        self.resyncs: list[Resync] = []
        self.connected = True

    def subscribe(self, topic: str, handler: Handler) -> Stop:
        self.handlers.setdefault(topic, []).append(handler)

        def stop() -> None:
            self.handlers[topic].remove(handler)
            if not self.handlers[topic]:
                del self.handlers[topic]

        return stop

    def on_resync(self, resync: Resync) -> Stop:
        self.resyncs.append(resync)
        return lambda: self.resyncs.remove(resync)

    def send(self, topic: str, message: Message) -> None:
        for handler in list(self.handlers.get(topic, [])):
            handler(message)

    def node_topics(self) -> set[str]:
        return {t.removeprefix("node:") for t in self.handlers if t.startswith("node:")}


async def until(
    check: Callable[[], bool], within: float = 20, what: str = "the condition", step: float = 0.05
) -> None:
    """Poll ``check`` on the running loop until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out after {within:g} s waiting for {what}"
        await asyncio.sleep(step)
