"""Problem details (RFC 9457): the error hierarchy and its responses."""

from __future__ import annotations

import orjson
import pytest

from sm_shared.problems import (
    PROBLEM_MEDIA_TYPE,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    TooManyRequests,
    Unauthorized,
    problem_response,
    response_for,
)


@pytest.mark.parametrize(
    ("cls", "status", "title"),
    [
        (ProblemError, 500, "Internal Server Error"),
        (BadRequest, 400, "Bad Request"),
        (Unauthorized, 401, "Unauthorized"),
        (Forbidden, 403, "Forbidden"),
        (NotFound, 404, "Not Found"),
        (Conflict, 409, "Conflict"),
        (PayloadTooLarge, 413, "Request Entity Too Large"),
    ],
)
def test_each_problem_has_its_status_and_title(
    cls: type[ProblemError], status: int, title: str
) -> None:
    error = cls("what went wrong")
    assert isinstance(error, ProblemError)
    assert str(error) == "what went wrong"
    assert error.to_dict() == {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": "what went wrong",
    }
    response = response_for(error)
    assert response.status_code == status
    assert response.media_type == PROBLEM_MEDIA_TYPE
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert orjson.loads(response.body) == error.to_dict()


def test_extra_members_and_type_are_carried() -> None:
    error = NotFound("no node n1", type_="https://sm.example/problems/node", node_id="n1")
    body = orjson.loads(response_for(error).body)
    assert body == {
        "type": "https://sm.example/problems/node",
        "title": "Not Found",
        "status": 404,
        "detail": "no node n1",
        "node_id": "n1",
    }


@pytest.mark.parametrize("member", ["status", "title", "type", "detail"])
def test_extra_members_cannot_override_the_standard_ones(member: str) -> None:
    # A status member that disagrees with the response's status would mislead clients.
    with pytest.raises(TypeError):
        BadRequest("bad", **{member: "other"})
    extra: dict[str, object] = {member: "other"}
    with pytest.raises(TypeError):
        problem_response(400, "Bad Request", "bad", **extra)  # type: ignore[arg-type]


def test_too_many_requests_carries_retry_after() -> None:
    error = TooManyRequests("slow down", retry_after=7)
    assert error.status == 429
    assert error.retry_after == 7
    response = response_for(error)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert orjson.loads(response.body)["retry_after"] == 7


def test_problem_response_builds_a_problem_document() -> None:
    response = problem_response(
        503, "Service Unavailable", "down", headers={"Retry-After": "1"}, checks={"redis": "x"}
    )
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.headers["retry-after"] == "1"
    assert orjson.loads(response.body) == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "down",
        "checks": {"redis": "x"},
    }
