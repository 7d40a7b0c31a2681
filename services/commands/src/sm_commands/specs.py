"""What a command runs: the kind's specification checked beyond the contract, its
redacted form (environment values ``***``) and the batch window.

The contract (``CommandCreate``) already bounds every member; this adds what
a schema cannot say precisely: the one specification the kind names,
environment variable names, a unit for every service action but ``list``,
and a signed order that still fits an agent's message.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

import orjson

from sm_shared.problems import BadRequest

KINDS: Final = ("shell", "service", "logs")
REDACTED: Final = "***"
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
DEFAULT_LINES: Final = 100
# The execute frame's ``order`` is at most 98,304 characters (agent protocol);
# this leaves room for the order's other members.
MAX_SPEC_BYTES: Final = 96_000


def specification(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The specification of ``kind`` from a create body, checked and completed with defaults."""
    if kind not in KINDS:
        raise BadRequest(f"unknown kind {kind!r}: one of {', '.join(KINDS)}", field="/kind")
    others = [name for name in KINDS if name != kind and name in body]
    if others:
        raise BadRequest(
            f"kind {kind!r} takes a `{kind}` object, not `{others[0]}`", field=f"/{others[0]}"
        )
    spec = body.get(kind)
    if not isinstance(spec, dict):
        raise BadRequest(f"kind {kind!r} needs a `{kind}` object", field=f"/{kind}")
    spec = dict(spec)
    if kind == "shell":
        for name in spec.get("env", {}):
            if not ENV_NAME.fullmatch(name):
                raise BadRequest(
                    f"environment variable name {name!r} is not valid "
                    "(letters, digits and `_`, not starting with a digit, at most 128)",
                    field="/shell/env",
                )
    elif kind == "service":
        action = spec["action"]
        if action == "list" and "unit" in spec:
            raise BadRequest("the `list` action takes no unit", field="/service/unit")
        if action != "list" and "unit" not in spec:
            raise BadRequest(f"the `{action}` action needs a unit", field="/service/unit")
    else:
        spec.setdefault("lines", DEFAULT_LINES)
        spec.setdefault("follow", False)
    size = len(orjson.dumps(spec))
    if size > MAX_SPEC_BYTES:
        raise BadRequest(
            f"the `{kind}` specification is {size} bytes as JSON; at most {MAX_SPEC_BYTES} "
            "fit in a signed order",
            field=f"/{kind}",
        )
    return spec


def redacted(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` as shown in answers and the audit log: environment values replaced by ``***``."""
    if kind != "shell" or "env" not in spec:
        return spec
    return {**spec, "env": {name: REDACTED for name in spec["env"]}}


def window(batch: str | None, node_count: int) -> int | None:
    """Executions in flight at once for ``batch`` (``"10"`` or ``"25%"``); None = no limit."""
    if batch is None:
        return None
    share = batch.endswith("%")
    size = math.ceil(node_count * int(batch[:-1]) / 100) if share else int(batch)
    size = max(size, 1)
    return None if size >= node_count else size
