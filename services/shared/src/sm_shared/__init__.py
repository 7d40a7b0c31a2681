"""What the Server Manager services must agree on.

Modules are named after what they hold: ``streams`` (Redis names), ``scopes``
(OAuth2 scopes and built-in roles), ``problems`` (problem+json errors),
``datadir`` (the files of a data directory), ``pki`` (the core CA and server
certificate), ``access_keys`` (the enrollment and secret key format),
``token_keys`` (JWT signing keys), ``tokens`` (access-token verification),
``settings`` (the settings every service shares), ``routes`` (path prefix →
service), ``audit`` (audit events), ``api_app`` (the frame of a Connexion
service). This package imports none of its consumers.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
