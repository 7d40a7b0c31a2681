"""What the Server Manager services must agree on.

Modules are named after what they hold: ``streams`` (Redis names), ``scopes``
(OAuth2 scopes and built-in roles), ``problems`` (problem+json errors),
``datadir`` (the files of a data directory), ``pki`` (the core CA and server
certificate), ``access_keys`` (the enrollment and secret key format),
``token_keys`` (JWT signing keys), ``tokens`` (access-token verification),
``command_keys`` (the Ed25519 command-signing key), ``first_start`` (what a
first start creates), ``database`` (SQLAlchemy engines: SQLite pragmas,
``BEGIN IMMEDIATE`` writers), ``settings`` (the settings every service
shares), ``routes`` (path prefix → service), ``audit`` (audit events),
``api_app`` (the frame of a Connexion service), ``probes`` (health, readiness,
metrics handlers), ``response_types`` and ``connexion_tuning`` (corrections
and caches for Connexion 3.3). This package imports none of its consumers
(``tests/test_import_direction.py``).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
