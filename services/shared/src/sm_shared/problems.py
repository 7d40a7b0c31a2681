"""Errors as RFC 9457 problem details (``application/problem+json``).

Domain code raises a :class:`ProblemError` subclass; the HTTP layer turns it
into a response in one place (:func:`problem_response`). The hierarchy::

    ProblemError                 (500 unless a subclass says otherwise)
    ├── BadRequest               400
    ├── Unauthorized             401
    ├── Forbidden                403
    ├── NotFound                 404
    ├── Conflict                 409
    ├── PayloadTooLarge          413
    └── TooManyRequests          429 (carries Retry-After)
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from starlette.responses import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Members every problem has; extension members may not redefine them.
STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})


def _check_extensions(extra: dict[str, Any]) -> None:
    clash = STANDARD_MEMBERS & extra.keys()
    if clash:
        raise TypeError(f"problem extension members may not redefine {sorted(clash)}")


class ProblemError(Exception):
    """An error the API reports to its caller as a problem document."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"

    def __init__(self, detail: str, *, type_: str = "about:blank", **extra: Any) -> None:
        _check_extensions(extra)
        super().__init__(detail)
        self.detail = detail
        self.type = type_
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        body.update(self.extra)
        return body

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ProblemError):
    status = 400
    title = "Bad Request"


class Unauthorized(ProblemError):
    status = 401
    title = "Unauthorized"


class Forbidden(ProblemError):
    status = 403
    title = "Forbidden"


class NotFound(ProblemError):
    status = 404
    title = "Not Found"


class Conflict(ProblemError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(ProblemError):
    status = 413
    title = "Request Entity Too Large"


class TooManyRequests(ProblemError):
    status = 429
    title = "Too Many Requests"

    def __init__(self, detail: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem+json response; ``extra`` adds extension members."""
    _check_extensions(extra)
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    body.update(extra)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def response_for(error: ProblemError) -> Response:
    """The response that reports ``error``."""
    return Response(
        orjson.dumps(error.to_dict()),
        status_code=error.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=error.headers(),
    )
