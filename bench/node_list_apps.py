"""Apps serving the node list for ``node_list.py`` (settings from ``SM_`` variables).

``registry_app``: the real registry. ``starlette_app``: a bare Starlette route
with the same JWT check calling the same domain function
(``sm_registry.nodes.list_nodes``): the difference is the service frame.
"""

from __future__ import annotations

import connexion
import orjson
from harness import bearer_refusal
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sm_registry import RegistrySettings, create_app, nodes
from sm_registry.context import RegistryContext
from sm_shared.api_app import ServiceResources
from sm_shared.tokens import TokenVerifier


def registry_app() -> connexion.AsyncApp:
    return create_app(RegistrySettings())


def starlette_app() -> Starlette:
    settings = RegistrySettings()
    verifier = TokenVerifier(settings.data)
    resources = ServiceResources.open(settings.database_url, settings.redis_url)
    ctx = RegistryContext(resources.engine, resources.redis, settings)

    async def handler(request: Request) -> Response:
        refusal = bearer_refusal(request, verifier, "nodes:read")
        if refusal is not None:
            return refusal
        params = request.query_params
        query = nodes.NodeQuery(
            selector=params.get("selector"),
            limit=int(params.get("limit", "100")),
            offset=int(params.get("offset", "0")),
        )
        # orjson, as the service frame serializes (pages embed orjson fragments)
        return Response(
            orjson.dumps(await nodes.list_nodes(ctx, query)), media_type="application/json"
        )

    return Starlette(routes=[Route("/api/v1/nodes", handler)])
