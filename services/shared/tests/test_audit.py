"""Audit events through the real Redis ``audit`` stream."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from sm_shared.audit import AuditEvent, emit
from sm_shared.streams import AUDIT_STREAM


@pytest.mark.parametrize("decode_responses", [False, True])
async def test_emit_then_read_back_round_trips(redis_url: str, decode_responses: bool) -> None:
    redis = Redis.from_url(redis_url, decode_responses=decode_responses)
    try:
        events = [
            AuditEvent(
                actor="alice",
                action="node.update",
                target="node:n1",
                service="registry",
                detail={"labels": {"env": "prod"}, "count": 2, "note": "é ✓"},
            ),
            AuditEvent(
                actor="sm-admin", action="group.delete", target="group:g", service="registry"
            ),
        ]
        ids = [await emit(redis, event) for event in events]
        assert all(isinstance(i, str) for i in ids)
        ordered = [tuple(int(part) for part in i.split("-")) for i in ids]
        assert ordered[0] < ordered[1]
        entries = await redis.xrange(AUDIT_STREAM)
        assert len(entries) == 2
        for (entry_id, fields), event, emitted in zip(entries, events, ids, strict=True):
            entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            assert entry == emitted
            assert AuditEvent.from_fields(fields) == event
    finally:
        await redis.aclose()


def test_fields_are_flat_strings() -> None:
    event = AuditEvent(actor="a", action="b", target="c", service="d", detail={"x": [1]}, at=1.5)
    fields = event.fields()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    assert fields == {
        "actor": "a",
        "action": "b",
        "target": "c",
        "service": "d",
        "detail": '{"x":[1]}',
        "at": "1.5",
    }


def test_event_time_defaults_to_now() -> None:
    import time

    before = time.time()
    event = AuditEvent(actor="a", action="b", target="c", service="d")
    assert before <= event.at <= time.time()
    assert event.detail == {}


def test_time_round_trips_exactly() -> None:
    event = AuditEvent(actor="a", action="b", target="c", service="d", at=1795882220.0707417)
    assert AuditEvent.from_fields(event.fields()).at == event.at


def test_from_fields_refuses_incomplete_events() -> None:
    fields = AuditEvent(actor="a", action="b", target="c", service="d").fields()
    del fields["actor"]
    with pytest.raises(KeyError):
        AuditEvent.from_fields(fields)


def test_given_keeps_only_the_fields_an_update_was_given() -> None:
    from sm_shared.audit import given

    assert given(role="viewer", disabled=None, description="", scopes=[]) == {
        "role": "viewer",
        "description": "",
        "scopes": [],
    }
    assert given() == {}
