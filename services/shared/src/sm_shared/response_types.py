"""The media type a handler's return value is sent as: the one its status declares.

Our operations declare ``application/json`` for success and
``application/problem+json`` for errors. Connexion 3.3 infers a response's
media type from *all* the types an operation declares, whatever the status,
and gives up with a 500 ("Multiple response content types are defined…")
when a handler returns a plain dict. Here the status the handler returns
(200 when it gives none) picks the response definition, and the one media type
that definition declares is used. Handlers that set ``Content-Type``
themselves, or return a response object, are left alone; a status declaring
several types falls back to Connexion's own inference.
"""

from __future__ import annotations

from typing import Any

_applied = False


def declared_media_types(operation: Any, status: int) -> list[str]:
    """The media types the operation declares for ``status`` (or its ``default`` response)."""
    definition = operation.response_definition(status)
    content = definition.get("content") or {}
    return list(content)


def apply() -> None:
    """Install the status-aware choice into Connexion (once per process)."""
    global _applied
    if _applied:
        return

    from connexion import utils
    from connexion.context import operation
    from connexion.datastructures import NoContent
    from connexion.decorators.response import BaseResponseDecorator

    original = BaseResponseDecorator.build_framework_response

    def build_framework_response(self: Any, handler_response: Any) -> Any:
        data, status, headers = self._unpack_handler_response(handler_response)
        if not self.framework.is_framework_response(data) and not utils.extract_content_type(
            headers or {}
        ):
            effective = status or (204 if data is None or data is NoContent else 200)
            declared = declared_media_types(operation, effective)
            if len(declared) == 1:
                handler_response = (
                    data,
                    effective,
                    {**(headers or {}), "Content-Type": declared[0]},
                )
        return original(self, handler_response)

    BaseResponseDecorator.build_framework_response = build_framework_response
    _applied = True
