"""Measured fixes for per-request work Connexion 3.3 repeats needlessly.

Connexion 3.3 rebuilds an operation's decorator chain on every request
(``AsyncOperation.fn`` is a property that constructs a ``StarletteDecorator``,
whose wrapper calls ``decorate`` again per call), and each rebuild runs
``inspect.signature``; the OAuth2 handler inspects the token-info function's
signature twice more per request; parameter validation deep-copies each
parameter's schema and builds a new ``Draft4Validator`` for every value. The
validators here are built once per parameter and reused (jsonschema
validators do not mutate their schema). The chain depends only on the handler
function and the API's fixed options — request data reaches it through
Connexion's context variables — so building it once per operation is
equivalent. ``bench/api_overhead.py`` measures the effect (bench/RESULTS.md).

The patch is applied only to the Connexion version it was written against.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Decimal
from importlib.metadata import version
from typing import Any

import orjson
from connexion.jsonifier import Jsonifier

PATCHED_VERSION = "3.3.0"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class OrjsonJsonifier(Jsonifier):  # type: ignore[misc]
    """Connexion's serializer on orjson (stdlib ``json`` took 1.1 ms for a page of
    100 nodes, orjson 0.03 ms). Datetimes, dates and UUIDs encode as Connexion's
    encoder does (ISO 8601, string); Decimals as strings."""

    def dumps(self, data: Any, **kwargs: Any) -> str:
        return orjson.dumps(data, default=_default).decode() + "\n"


_applied = False


def apply() -> bool:
    """Install the caches; returns False (and changes nothing) on another Connexion version."""
    global _applied
    if _applied:
        return True
    if version("connexion") != PATCHED_VERSION:
        return False

    from connexion.apps.asynchronous import AsyncOperation
    from connexion.decorators.main import ASGIDecorator, StarletteDecorator
    from connexion.security import AbstractSecurityHandler
    from connexion.utils import is_null, is_nullable
    from connexion.validators.parameter import (
        Draft4Validator,
        ParameterValidator,
        ValidationError,
    )
    from connexion.validators.parameter import draft4_format_checker as format_checker

    # id(param) -> (param, validator); the param is held so its id is never reused.
    validators: dict[int, tuple[dict[str, Any], Any]] = {}

    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        if is_nullable(param) and is_null(value):
            return None
        if value is not None:
            entry = validators.get(id(param))
            if entry is None:
                schema = param.get("schema", param)
                entry = validators[id(param)] = (
                    param,
                    Draft4Validator(schema, format_checker=format_checker),
                )
            try:
                entry[1].validate(value)
            except ValidationError as exception:
                return str(exception)
            return None
        if param.get("required"):
            return f"Missing {parameter_type} parameter '{param['name']}'"
        return None

    original_decorate = ASGIDecorator.decorate

    def decorate(self: Any, function: Callable[..., Any]) -> Callable[..., Any]:
        cache: dict[Callable[..., Any], Callable[..., Any]] = self.__dict__.setdefault(
            "_sm_decorated", {}
        )
        decorated = cache.get(function)
        if decorated is None:
            decorated = cache[function] = original_decorate(self, function)
        return decorated

    def fn(self: Any) -> Callable[..., Any]:
        cached: Callable[..., Any] | None = self.__dict__.get("_sm_fn")
        if cached is None:
            decorator = StarletteDecorator(
                pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
            )
            cached = self.__dict__["_sm_fn"] = decorator(self._fn)
        return cached

    accepts_kwarg = functools.lru_cache(maxsize=1024)(AbstractSecurityHandler._accepts_kwarg)
    AbstractSecurityHandler._accepts_kwarg = staticmethod(accepts_kwarg)
    ParameterValidator.validate_parameter = staticmethod(validate_parameter)
    ASGIDecorator.decorate = functools.wraps(original_decorate)(decorate)
    AsyncOperation.fn = property(fn)
    _applied = True
    return True
