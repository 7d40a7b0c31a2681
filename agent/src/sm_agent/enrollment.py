"""Enrollment: trade the enrollment key (and the node's facts) for a node credential.

``POST <core>/api/v1/enroll`` over TLS verified with the CA the key pins::

    {"key": "sme1.…", "machine_id": "…", "facts": {…}, "credential": "smn1.… (re-enrollment)"}
    → 201 {"node_id", "credential", "command_public_key", "gateway_url", "heartbeat_interval"}

A node that is already enrolled sends its current credential, so the core
keeps its identity instead of creating a new node.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from sm_agent import __version__
from sm_agent.facts import gather_facts, machine_id
from sm_agent.state import NodeIdentity, StateDir
from sm_agent.trust import bootstrap, core_origin, parse_key

ENROLL_PATH = "/api/v1/enroll"
TIMEOUT = 30.0
MAX_RESPONSE_BYTES = 64 * 1024

log = logging.getLogger(__name__)


class EnrollmentError(Exception):
    """The core refused the enrollment or answered something unusable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _problem_detail(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read(MAX_RESPONSE_BYTES))
    except (ValueError, OSError):
        return error.reason if isinstance(error.reason, str) else ""
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or "")
    return ""


def _post(url: str, payload: dict[str, Any], context: Any) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 (https only: core_origin)
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"sm-agent/{__version__}",
        },
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=TIMEOUT) as response:  # noqa: S310
            raw = response.read(MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as exc:
        detail = _problem_detail(exc)
        retry = exc.headers.get("Retry-After")
        hint = f" (retry after {retry} s)" if retry else ""
        raise EnrollmentError(
            f"the core refused the enrollment: HTTP {exc.code} {detail}{hint}".rstrip(), exc.code
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EnrollmentError(f"cannot reach {url}: {reason}") from exc
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise EnrollmentError("the core's enrollment answer is not JSON") from exc
    if not isinstance(body, dict):
        raise EnrollmentError("the core's enrollment answer is not a JSON object")
    return body


def _identity(body: dict[str, Any], server: str) -> tuple[NodeIdentity, str]:
    try:
        node_id = body["node_id"]
        credential = body["credential"]
        public_key = body["command_public_key"]
        gateway_url = body["gateway_url"]
        interval = body["heartbeat_interval"]
    except KeyError as exc:
        raise EnrollmentError(f"the core's enrollment answer lacks {exc.args[0]!r}") from exc
    if not (isinstance(node_id, str) and node_id):
        raise EnrollmentError("the core's enrollment answer has no usable node_id")
    if not (isinstance(credential, str) and credential.startswith(f"smn1.{node_id}.")):
        raise EnrollmentError("the core's enrollment answer has no usable credential")
    if not (isinstance(gateway_url, str) and gateway_url.startswith("wss://")):
        raise EnrollmentError("the core's enrollment answer has no wss:// gateway_url")
    if not isinstance(public_key, str) or isinstance(interval, bool):
        raise EnrollmentError("the core's enrollment answer has wrong types")
    if not isinstance(interval, int | float) or interval < 1:
        raise EnrollmentError("the core's heartbeat_interval is below 1 s")
    identity = NodeIdentity(
        node_id=node_id,
        command_public_key=public_key,
        gateway_url=gateway_url,
        server=server,
        heartbeat_interval=float(interval),
    )
    return identity, credential


def enroll(server: str, key_text: str, state: StateDir) -> NodeIdentity:
    """Enroll this node with the core at ``server``; store the result in ``state``.

    Raises MalformedKey, TrustError (the CA does not match the key) or
    EnrollmentError.
    """
    key = parse_key(key_text)
    origin = core_origin(server)
    context = bootstrap(origin, key, state.ca_file)
    payload: dict[str, Any] = {"key": key.text, "machine_id": machine_id(), "facts": gather_facts()}
    if state.enrolled():
        payload["credential"] = state.credential()
    body = _post(origin + ENROLL_PATH, payload, context)
    identity, credential = _identity(body, origin)
    state.save(identity, credential)
    log.info("enrolled as node %s; gateway %s", identity.node_id, identity.gateway_url)
    return identity
