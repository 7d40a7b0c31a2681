"""What ``up`` prints once everything is ready, and how to read it back.

Each fact is one ``Label: value`` line, never wrapped, so people copy keys
from it and scripts (and the end-to-end tests) parse it with :func:`parse`::

    Enrollment key (for nodes):   sme1.…
    Secret key (for the client):  sms1.…
    CA fingerprint (SHA-256):     AB:CD:…
    API:        https://127.0.0.1:8700
    Gateway:    wss://127.0.0.1:8701/agent/ws
    Web client: http://127.0.0.1:8702
    …
    Server Manager is ready (in 2.31 s). Press Ctrl-C to stop it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

ENROLLMENT = "Enrollment key (for nodes)"
SECRET = "Secret key (for the client)"  # noqa: S105 (a label)
FINGERPRINT = "CA fingerprint (SHA-256)"
API = "API"
GATEWAY = "Gateway"
WEB = "Web client"
AGENT = "Local agent"
# The remote control the local agent allows (sm_ctl.local_agent.CONTROL_NOTE).
AGENT_CONTROL = "Local agent allows"
PROCESSES = "Processes"
READY = "Server Manager is ready"

_LINE = re.compile(r"^(?P<label>[^:]+):\s+(?P<value>\S.*)$")
_READY = re.compile(rf"^{READY} \(in (?P<seconds>[0-9.]+) s\)")


def line(label: str, value: str, width: int = 29) -> str:
    return f"{label + ':':<{width}} {value}"


def ready_line(seconds: float) -> str:
    return f"{READY} (in {seconds:.2f} s). Press Ctrl-C to stop it."


@dataclass(frozen=True)
class Banner:
    """The facts of one ``up`` banner."""

    enrollment_key: str
    secret_key: str
    fingerprint: str
    api_url: str
    gateway_url: str
    seconds: float
    processes: dict[str, int]
    fields: dict[str, str]

    @property
    def web_url(self) -> str:
        """The web client's URL ("" when ``up`` runs without it, or it did not start)."""
        value = self.fields.get(WEB, "")
        return value if value.startswith("http") else ""


class NoBanner(ValueError):
    """The text holds no complete banner."""


def parse(lines: Iterable[str]) -> Banner:
    """Read a banner from ``up``'s output (extra lines are ignored)."""
    fields: dict[str, str] = {}
    seconds: float | None = None
    for raw in lines:
        text = raw.strip()
        ready = _READY.match(text)
        if ready:
            seconds = float(ready["seconds"])
            continue
        match = _LINE.match(text)
        if match:
            fields[match["label"].strip()] = match["value"].strip()
    try:
        processes = {}
        for item in fields.get(PROCESSES, "").split(","):
            if item.strip():
                name, pid = item.split()
                processes[name] = int(pid)
        if seconds is None:
            raise KeyError(READY)
        return Banner(
            enrollment_key=fields[ENROLLMENT],
            secret_key=fields[SECRET],
            fingerprint=fields[FINGERPRINT],
            api_url=fields[API],
            gateway_url=fields[GATEWAY],
            seconds=seconds,
            processes=processes,
            fields=fields,
        )
    except (KeyError, ValueError) as exc:
        raise NoBanner(f"incomplete banner: {exc}") from exc
