"""The one way a view-model tells its views that something changed.

A view-model subclasses :class:`Observable`, changes its fields, then calls
:meth:`Observable.changed`; each view that listens re-renders from the fields.
Views never poke at each other; view-models never hold controls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from sm_client.api import ApiError

Listener = Callable[[], None]


class Observable:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after each change; returns the function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def changed(self) -> None:
        for listener in list(self._listeners):
            listener()


class Phase(Enum):
    """Where a screen's data is: every screen shows each of these differently."""

    LOADING = "loading"
    READY = "ready"
    EMPTY = "empty"
    ERROR = "error"


@dataclass
class Problem:
    """An error as a screen shows it: the problem's title and detail."""

    title: str
    detail: str = ""
    status: int = 0

    @classmethod
    def of(cls, error: ApiError) -> Problem:
        return cls(error.title, error.detail, error.status)


@dataclass
class Load:
    """The loading state of one piece of a screen (a list, a chart, a form)."""

    phase: Phase = Phase.LOADING
    problem: Problem | None = field(default=None)

    def loading(self) -> None:
        self.phase, self.problem = Phase.LOADING, None

    def ready(self, empty: bool = False) -> None:
        self.phase, self.problem = (Phase.EMPTY if empty else Phase.READY), None

    def failed(self, error: ApiError) -> None:
        self.phase, self.problem = Phase.ERROR, Problem.of(error)
