"""What view-models need of the live event stream (``/events/ws``).

``sm_client.live.LiveEvents`` provides it over a real WebSocket; a view-model
takes any ``Feed`` so pytest can drive it against the real gateway too.

Messages are the gateway's server messages as decoded JSON (see
``openapi/events-protocol.json``): ``event`` on topic ``fleet`` (a
``StatusEvent`` under ``"event"``), ``metrics`` on ``node:<id>`` (a heartbeat
under ``"heartbeat"``), ``progress`` on ``command:<id>`` (an ``ExecutionEvent``
or ``OutputEvent`` under ``"event"``). Handlers run on the app's event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Message = dict[str, Any]
Handler = Callable[[Message], None]
Resync = Callable[[], Awaitable[None]]
Stop = Callable[[], None]


class Feed(Protocol):
    def subscribe(self, topic: str, handler: Handler) -> Stop:
        """Deliver ``topic``'s messages to ``handler`` until the returned function is called.

        Several handlers may hold one topic; the feed subscribes to the topic on
        the socket while at least one does (and again after each reconnect).
        """

    def on_resync(self, resync: Resync) -> Stop:
        """Await ``resync`` after each reconnect, once the topics are subscribed again.

        A view-model re-reads over REST what it shows here (events are never
        replayed), then applies the events that arrive on top.
        """

    @property
    def connected(self) -> bool:
        """Whether the socket is up now (views show a "reconnecting" hint when not)."""
