"""The typed async client of the core's HTTP API; one module per area, no Flet."""

from sm_client.api.core import (
    AccessToken,
    ApiError,
    CoreApi,
    Login,
    PasswordLogin,
    SecretKeyLogin,
)

__all__ = ["AccessToken", "ApiError", "CoreApi", "Login", "PasswordLogin", "SecretKeyLogin"]
