"""Handler of the token endpoint (tag ``oauth``) and its RFC 6749 error adapter."""

from __future__ import annotations

from typing import Any

import orjson
from connexion import request
from connexion.exceptions import BadRequestProblem, ProblemException, UnsupportedMediaTypeProblem
from connexion.lifecycle import ConnexionRequest, ConnexionResponse

from sm_registry.context import current
from sm_registry.oauth import (
    TOKEN_PATH,
    TokenHttpRequest,
    TokenHttpResponse,
    error_response,
    token_response,
)
from sm_registry.ratelimit import address_subject


def _as_connexion(response: TokenHttpResponse) -> ConnexionResponse:
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
    return ConnexionResponse(
        status_code=response.status,
        body=orjson.dumps(response.body),
        content_type="application/json",
        headers=headers,
    )


async def issue_token(body: dict[str, Any]) -> ConnexionResponse:
    form = {key: str(value) for key, value in body.items()}
    token_request = TokenHttpRequest(uri=str(request.url), headers=request.headers, form=form)
    return _as_connexion(await token_response(current(), token_request, address_subject(request)))


def request_problem(req: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Connexion's request-validation problems, as RFC 6749 errors on the token endpoint.

    Registered for ``BadRequestProblem`` and ``UnsupportedMediaTypeProblem``;
    on every other path the usual problem+json answer is kept.
    """
    assert isinstance(exc, ProblemException)
    if req.url.path != TOKEN_PATH:
        response: ConnexionResponse = exc.to_problem()
        return response
    detail = (
        exc.detail
        if isinstance(exc, BadRequestProblem)
        else ("The body must be application/x-www-form-urlencoded.")
    )
    description = "".join(ch for ch in str(detail) if 0x20 <= ord(ch) <= 0x7E and ch not in '"\\')
    return _as_connexion(error_response(400, "invalid_request", description))


VALIDATION_PROBLEMS = (BadRequestProblem, UnsupportedMediaTypeProblem)
