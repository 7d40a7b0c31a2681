"""Live events from the gateway's ``/events/ws``: the :class:`~sm_client.state.feed.Feed`
view-models subscribe to.

One WebSocket per signed-in session, authenticated with the session's access
token. Topics are subscribed while at least one handler holds them. When the
socket drops (gateway restart, network, 4008 too slow, 4401 token expired) the
feed reconnects with backoff (a new token first after 4401), subscribes every
held topic again, waits for the gateway's answer, and only then awaits each
registered resync: the view-models re-read over REST what they show and apply
the events that arrive on top (events are never replayed).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from sm_client.api import ApiError, CoreApi
from sm_client.state.feed import Handler, Message, Resync, Stop
from sm_client.state.observable import Observable

log = logging.getLogger(__name__)

EVENTS_PATH: Final = "/events/ws"
OPEN_TIMEOUT: Final = 10.0
ANSWER_TIMEOUT: Final = 10.0
MAX_MESSAGE: Final = 4 * 1024 * 1024
# Topics per subscribe message (the protocol's maxItems).
CHUNK: Final = 200
# Seconds between attempts: doubling up to the last, with ±25 % jitter.
BACKOFF: Final = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
TOKEN_EXPIRED: Final = 4401


def events_candidates(server: str, local_gateway: str | None = None) -> tuple[str, ...]:
    """Where ``/events/ws`` may be, in the order to try.

    ``SM_EVENTS_URL`` if set; the local agent's gateway (``up``'s own, when the
    core is the local one); the core's own origin (a reverse proxy in front of
    both); the gateway on the port after the API's (``up``'s layout).
    """
    parts = urlsplit(server if "://" in server else f"https://{server}")
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    port = parts.port or 443
    urls = []
    if explicit := os.environ.get("SM_EVENTS_URL"):
        urls.append(explicit)
    if local_gateway:
        urls.append(local_gateway.split(",")[0].strip().replace("/agent/ws", EVENTS_PATH))
    urls += [f"wss://{parts.netloc}{EVENTS_PATH}", f"wss://{host}:{port + 1}{EVENTS_PATH}"]
    return tuple(dict.fromkeys(urls))


def topic_of(message: Message) -> str | None:
    """The topic a server message belongs to (``metrics`` carries its node, not a topic)."""
    kind = message.get("type")
    if kind in ("event", "progress"):
        topic = message.get("topic")
        return topic if isinstance(topic, str) else None
    if kind == "metrics" and isinstance(message.get("node_id"), str):
        return f"node:{message['node_id']}"
    return None


class LiveEvents(Observable):
    """The session's live feed; :meth:`changed` fires when :attr:`connected` flips."""

    def __init__(
        self,
        api: CoreApi,
        urls: Sequence[str] | None = None,
        *,
        backoff: Sequence[float] = BACKOFF,
    ) -> None:
        super().__init__()
        self.api = api
        self.urls = list(urls or events_candidates(api.origin))
        self.backoff = tuple(backoff)
        self._handlers: dict[str, list[Handler]] = {}
        self._resyncs: list[Resync] = []
        self._socket: ClientConnection | None = None
        self._connected = False
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._send_lock = asyncio.Lock()
        self._sends: set[asyncio.Task[None]] = set()
        # Topics the gateway refused (a scope the token lacks): not asked for again.
        self.refused: dict[str, str] = {}
        # How many times a connection came up (the first one is not a *re*connect).
        self.connections = 0
        self.last_error = ""

    # --- Feed -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def subscribe(self, topic: str, handler: Handler) -> Stop:
        handlers = self._handlers.setdefault(topic, [])
        handlers.append(handler)
        if len(handlers) == 1:
            self._send_later("subscribe", [topic])

        def stop() -> None:
            held = self._handlers.get(topic)
            if held is None or handler not in held:
                return
            held.remove(handler)
            if not held:
                del self._handlers[topic]
                self.refused.pop(topic, None)
                self._send_later("unsubscribe", [topic])

        return stop

    def on_resync(self, resync: Resync) -> Stop:
        self._resyncs.append(resync)

        def stop() -> None:
            if resync in self._resyncs:
                self._resyncs.remove(resync)

        return stop

    # --- lifetime ---------------------------------------------------------------------

    @property
    def topics(self) -> list[str]:
        """The topics some handler holds (what the socket is subscribed to when up)."""
        return sorted(self._handlers)

    def start(self) -> None:
        """Connect in the background and keep connecting until :meth:`close`."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        sends = list(self._sends)
        for send in sends:
            send.cancel()
        await asyncio.gather(*sends, return_exceptions=True)
        await self._drop()

    async def reconnect(self) -> None:
        """Drop the socket now (the run loop connects again and re-syncs)."""
        socket = self._socket
        if socket is not None:
            await socket.close()

    # --- the connection ---------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            renew = False
            began = loop.time()
            try:
                socket = await self._open()
                began = loop.time()
                await self._serve(socket)
            except asyncio.CancelledError:
                raise
            except (ConnectionClosed, _Closed) as exc:
                if isinstance(exc, ConnectionClosed):
                    code = exc.rcvd.code if exc.rcvd is not None else None
                else:
                    code = exc.code
                renew = code == TOKEN_EXPIRED
                # A connection that held a while starts the backoff over; one the
                # gateway closes at once (1011, 4008 in a loop) backs off further.
                failures = 1 if loop.time() - began > 10 else failures + 1
                self.last_error = f"closed: {code}"
                log.info("events socket closed (%s); reconnecting", code)
            except _Unauthorized as exc:
                renew = True
                failures += 1
                self.last_error = str(exc)
            except (OSError, TimeoutError, WebSocketException, ApiError, _Refused) as exc:
                failures += 1
                self.last_error = str(exc) or type(exc).__name__
                log.info("events socket unavailable: %s", self.last_error)
            finally:
                await self._drop()
            if failures:
                delay = self.backoff[min(failures, len(self.backoff)) - 1]
                await asyncio.sleep(delay * random.uniform(0.75, 1.25))  # noqa: S311
            if renew:
                with contextlib.suppress(ApiError):
                    await self.api.access_token()

    async def _open(self) -> ClientConnection:
        """A socket to the first candidate that answers, subscribed to every held topic."""
        token = await self.api.access_token()
        problems: list[str] = []
        unauthorized = False
        for url in list(self.urls):
            try:
                socket = await connect(
                    url,
                    ssl=self.api.verify,
                    additional_headers=token.header(),
                    open_timeout=OPEN_TIMEOUT,
                    max_size=MAX_MESSAGE,
                )
            except InvalidStatus as exc:
                unauthorized |= exc.response.status_code == 401
                problems.append(f"{url}: HTTP {exc.response.status_code}")
                continue
            except (OSError, TimeoutError, WebSocketException) as exc:
                problems.append(f"{url}: {exc or type(exc).__name__}")
                continue
            # The one that answered is tried first next time.
            self.urls.remove(url)
            self.urls.insert(0, url)
            self._socket = socket
            try:
                await self._resubscribe(socket)
            except BaseException:
                await self._drop()
                raise
            return socket
        if unauthorized:
            raise _Unauthorized("; ".join(problems))
        raise _Refused("; ".join(problems) or "no events URL")

    async def _resubscribe(self, socket: ClientConnection) -> None:
        """Subscribe to every held topic; wait for the answers (dispatching other messages)."""
        while True:
            topics = [t for t in self._handlers if t not in self.refused]
            pending: set[str] = set()
            for start in range(0, len(topics), CHUNK):
                pending.add(await self._send(socket, "subscribe", topics[start : start + CHUNK]))
            retry = False
            async with asyncio.timeout(ANSWER_TIMEOUT):
                while pending:
                    message = json.loads(await socket.recv())
                    answer = message.get("id")
                    if answer in pending:
                        pending.discard(answer)
                        if message.get("type") == "error":
                            retry |= self._note_refusal(message)
                    else:
                        self._dispatch(message)
            if not retry:
                return

    def _note_refusal(self, message: Message) -> bool:
        """Remember the topics an ``error`` answer names; whether any was new."""
        problem = message.get("problem") or {}
        named = [t for t in problem.get("topics") or [] if t in self._handlers]
        for topic in named:
            self.refused[topic] = str(problem.get("detail") or problem.get("title") or "")
        log.warning("events: subscription refused: %s", problem)
        return bool(named)

    async def _serve(self, socket: ClientConnection) -> None:
        self.connections += 1
        self._set_connected(True)
        if self.connections > 1:
            for resync in list(self._resyncs):
                try:
                    await resync()
                except Exception:
                    log.exception("a resync after reconnecting failed")
        async for raw in socket:
            if isinstance(raw, bytes):
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if isinstance(message, dict):
                if message.get("type") == "error":
                    self._note_refusal(message)
                self._dispatch(message)
        raise _Closed(socket.close_code)

    def _dispatch(self, message: Message) -> None:
        topic = topic_of(message)
        if topic is None:
            return
        for handler in list(self._handlers.get(topic, ())):
            try:
                handler(message)
            except Exception:
                log.exception("a live event handler failed on %s", topic)

    async def _send(self, socket: ClientConnection, kind: str, topics: list[str]) -> str:
        ident = str(next(self._ids))
        body: dict[str, Any] = {"type": kind, "id": ident, "topics": topics}
        async with self._send_lock:
            await socket.send(json.dumps(body))
        return ident

    def _send_later(self, kind: str, topics: list[str]) -> None:
        """Tell the gateway now if connected; otherwise the next connect subscribes."""
        socket = self._socket
        if socket is None or not self._connected:
            return

        async def send() -> None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._send(socket, kind, topics)

        try:
            task = asyncio.get_running_loop().create_task(send())
        except RuntimeError:  # no loop: nothing is connected either
            return
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _drop(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            try:
                with contextlib.suppress(Exception):
                    await socket.close()
            finally:
                # Never leave the transport to the garbage collector, even when the
                # closing handshake was cut short (cancelled, or the loop is ending).
                socket.transport.abort()
        self._set_connected(False)

    def _set_connected(self, connected: bool) -> None:
        if connected is not self._connected:
            self._connected = connected
            self.changed()


class _Refused(Exception):
    """No candidate URL accepted the connection."""


class _Unauthorized(Exception):
    """The gateway refused the token (HTTP 401): renew it, then try again."""


class _Closed(Exception):
    """The socket ended (the gateway closed it with ``code``)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed: {code}")
        self.code = code
