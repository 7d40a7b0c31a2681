"""Targets resolved to node ids by the registry (``POST /api/v1/nodes/resolve``).

The commands service asks with the service token (``sm_shared.service_token``).
The registry's 400 (a bad selector: ``position``, ``selector``, ``pointer``) and
404 (unknown ids or groups) are passed on as they are; a target that names
no node is a 422 here; a registry that cannot be asked is a 503.
"""

from __future__ import annotations

import ssl
from typing import Any, Final

import httpx

from sm_shared.problems import STANDARD_MEMBERS, BadRequest, NotFound, ProblemError
from sm_shared.service_token import RegistryUnavailable, ServiceToken

RESOLVE_PATH: Final = "/api/v1/nodes/resolve"


class Unprocessable(ProblemError):
    status = 422
    title = "Unprocessable Content"


class Unavailable(ProblemError):
    status = 503
    title = "Service Unavailable"


class NoNodes(Unprocessable):
    def __init__(self, detail: str = "No node matches the target") -> None:
        super().__init__(detail)


class Resolver:
    """Resolves targets through the registry at ``http``'s base URL."""

    def __init__(self, http: httpx.AsyncClient, token: ServiceToken) -> None:
        self._http = http
        self._token = token

    @classmethod
    def open(cls, registry_url: str, ca_file: str, secret_file: Any, timeout: float) -> Resolver:
        http = httpx.AsyncClient(
            base_url=registry_url,
            verify=ssl.create_default_context(cafile=ca_file),
            timeout=timeout,
            trust_env=False,  # the registry is ours: never through an environment proxy
        )
        return cls(http, ServiceToken(http, secret_file))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def resolve(self, target: dict[str, Any]) -> list[str]:
        """The ids of the nodes ``target`` names (sorted, at least one)."""
        try:
            response = await self._token.send(self._http, "POST", RESOLVE_PATH, json=target)
        except RegistryUnavailable as exc:
            raise Unavailable(f"the registry cannot be asked: {exc}") from exc
        except httpx.HTTPError as exc:
            raise Unavailable(f"the registry cannot be asked: {exc!r}") from exc
        if response.status_code == 200:
            node_ids: list[str] = response.json()["node_ids"]
            if not node_ids:
                raise NoNodes()
            return node_ids
        if response.status_code in (400, 404):
            raise _passed_on(response)
        raise Unavailable(
            f"the registry answered the target resolution with HTTP {response.status_code}"
        )


def _passed_on(response: httpx.Response) -> ProblemError:
    """The registry's 400 or 404 problem as ours: same detail and extension members."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    detail = str(body.get("detail") or "the registry refused the target")
    extra = {k: v for k, v in body.items() if k not in STANDARD_MEMBERS}
    if response.status_code == 404:
        return NotFound(detail, **extra)
    return BadRequest(detail, **extra)
