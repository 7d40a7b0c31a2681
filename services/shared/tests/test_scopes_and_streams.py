"""Scopes, built-in roles and Redis names: the vocabulary the services share."""

from __future__ import annotations

from sm_shared import scopes, streams


def test_roles_are_nested_sets_of_known_scopes() -> None:
    viewer, operator, admin = (
        set(scopes.BUILTIN_ROLES[r]) for r in ("viewer", "operator", "admin")
    )
    assert viewer < operator < admin
    assert admin == set(scopes.ALL_SCOPES)
    assert scopes.ADMIN not in operator
    assert not {s for s in viewer if s.endswith(":write") or s.endswith(":run")}


def test_service_scope_belongs_to_no_role() -> None:
    assert scopes.SERVICE not in scopes.ALL_SCOPES
    assert all(scopes.SERVICE not in role for role in scopes.BUILTIN_ROLES.values())


def test_parse_scope() -> None:
    assert scopes.parse_scope("") == frozenset()
    assert scopes.parse_scope("  nodes:read   admin ") == {"nodes:read", "admin"}


def test_redis_names() -> None:
    assert streams.presence_key("n1") == "presence:n1"
    assert streams.route_key("n1") == "route:n1"
    assert streams.gateway_inbox("g1") == "gateway:g1:inbox"
    assert streams.rate_limit_key("enroll", "10.0.0.1") == "ratelimit:enroll:10.0.0.1"
    names = {
        streams.METRICS_STREAM,
        streams.RESULTS_STREAM,
        streams.AUDIT_STREAM,
        streams.EVENTS_CHANNEL,
    }
    assert len(names) == 4
