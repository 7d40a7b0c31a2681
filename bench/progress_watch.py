"""When each execution's result was committed: the commands service's progress, read off Redis.

The commands service publishes an ``ExecutionEvent`` on ``command:<id>``
(``sm_shared.streams.command_channel``) after it has recorded the state
change, so the arrival of an execution's terminal event is an upper bound of
when its result was committed (high by one Redis hop). A thread of its own
(so the swarm's busy event loop does not delay the timestamps; the GIL may,
by a few milliseconds) pattern-subscribes to ``command:*`` *before* the
command is posted, so no event can be missed the way a subscription made
after the ``POST`` answered could miss them, and keeps, per execution, the
arrival time of each state and how many terminal events it saw.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
import redis
from swarm_executions import TERMINAL

from sm_shared.streams import command_channel


@dataclass
class CommandProgress:
    """One command's executions as their events arrived."""

    # Execution id → arrival time of its first terminal event, and its state.
    terminal_at: dict[str, float] = field(default_factory=dict)
    terminal_state: dict[str, str] = field(default_factory=dict)
    # Execution id → how many terminal events arrived (more than one: published twice).
    terminal_events: Counter[str] = field(default_factory=Counter)
    # State → events seen; execution id → node id.
    states: Counter[str] = field(default_factory=Counter)
    node_of: dict[str, str] = field(default_factory=dict)
    outputs: int = 0
    other: Counter[str] = field(default_factory=Counter)

    def twice(self) -> dict[str, int]:
        return {x: n for x, n in self.terminal_events.items() if n > 1}


class ProgressWatch:
    def __init__(self, redis_url: str) -> None:
        self._url = redis_url
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name="progress-watch")
        self._commands: dict[str, CommandProgress] = {}
        self.error: BaseException | None = None

    def __enter__(self) -> ProgressWatch:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError(f"could not subscribe to command channels: {self.error!r}")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def progress(self, command_id: str) -> CommandProgress:
        with self._lock:
            return self._commands.setdefault(command_id, CommandProgress())

    def terminal(self, command_id: str) -> int:
        """Executions of the command with a terminal state seen so far."""
        return len(self.progress(command_id).terminal_at)

    def _run(self) -> None:
        client = redis.Redis.from_url(self._url)
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        prefix = command_channel("")
        try:
            pubsub.psubscribe(command_channel("*"))
            deadline = time.monotonic() + 30
            while True:  # the server's psubscribe confirmation: from then on nothing is missed
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "psubscribe":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("no psubscribe confirmation")
            self._ready.set()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.2)
                if message is None or message["type"] != "pmessage":
                    continue
                now = time.time()
                channel = message["channel"].decode()
                self._record(channel.removeprefix(prefix), message["data"], now)
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            raise
        finally:
            pubsub.close()
            client.close()

    def _record(self, command_id: str, data: bytes, now: float) -> None:
        event = orjson.loads(data)
        # Published as the bare event or wrapped as in the events protocol's `progress`.
        if isinstance(event, dict) and event.get("type") == "progress":
            event = event.get("event", {})
        progress = self.progress(command_id)
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "output":
            progress.outputs += 1
            return
        if kind != "execution":
            progress.other[str(kind)] += 1
            return
        execution_id = str(event["execution_id"])
        state = str(event["state"])
        progress.states[state] += 1
        progress.node_of.setdefault(execution_id, str(event.get("node_id")))
        if state in TERMINAL:
            progress.terminal_events[execution_id] += 1
            if execution_id not in progress.terminal_at:
                progress.terminal_state[execution_id] = state
                progress.terminal_at[execution_id] = now
