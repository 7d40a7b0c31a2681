"""Label keys and values, and the selector parser and matcher."""

from __future__ import annotations

import itertools
import random

import pytest

from sm_registry.labels import (
    MAX_LABELS,
    InvalidLabel,
    Operator,
    Requirement,
    Selector,
    SelectorSyntaxError,
    key_problem,
    parse_selector,
    validate_labels,
    value_problem,
)

# ---- keys and values ----


@pytest.mark.parametrize(
    "key",
    [
        "app",
        "a",
        "A1",
        "app.kubernetes.io/name",
        "example.com/role",
        "k8s.io/zone-a",
        "my_key.v-2",
        "x" * 63,
        "a/b",
        ("a" * 63 + ".") * 3 + "a" * 61 + "/n",  # a 253-character prefix
    ],
)
def test_valid_keys(key: str) -> None:
    assert key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "empty name"),
        ("/app", "empty prefix"),
        ("example.com/", "empty name"),
        ("-app", "start and end"),
        ("app-", "start and end"),
        ("ap p", "start and end"),
        ("x" * 64, "longer than 63"),
        ("Example.com/app", "DNS subdomain"),
        ("ex_ample.com/app", "DNS subdomain"),
        ("example..com/app", "DNS subdomain"),
        ("-example.com/app", "DNS subdomain"),
        ("a/b/c", "DNS subdomain"),
        ("a" * 254 + "/n", "longer than 253"),
        ("é", "start and end"),
    ],
)
def test_invalid_keys(key: str, why: str) -> None:
    problem = key_problem(key)
    assert problem is not None
    assert why in problem


@pytest.mark.parametrize("value", ["", "v", "prod", "1.2.3", "a_b-c.d", "Z" * 63])
def test_valid_values(value: str) -> None:
    assert value_problem(value) is None


@pytest.mark.parametrize("value", ["-v", "v-", "a b", "a/b", "x" * 64, "ü", "a,b"])
def test_invalid_values(value: str) -> None:
    assert value_problem(value) is not None


def test_validate_labels_names_the_offending_key() -> None:
    assert validate_labels({"env": "prod", "example.com/x": ""}) == {
        "env": "prod",
        "example.com/x": "",
    }
    with pytest.raises(InvalidLabel) as caught:
        validate_labels({"env": "prod", "bad key": "v"})
    assert caught.value.to_dict()["label"] == "bad key"
    assert caught.value.status == 400
    with pytest.raises(InvalidLabel) as caught:
        validate_labels({"env": "-prod"})
    assert caught.value.to_dict()["label"] == "env"


def test_validate_labels_limits_the_count() -> None:
    validate_labels({f"k{i}": "v" for i in range(MAX_LABELS)})
    with pytest.raises(InvalidLabel, match="at most 64"):
        validate_labels({f"k{i}": "v" for i in range(MAX_LABELS + 1)})


# ---- parsing ----


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("env=prod", [Requirement("env", Operator.EQUALS, ("prod",))]),
        ("env==prod", [Requirement("env", Operator.EQUALS, ("prod",))]),
        ("env = prod", [Requirement("env", Operator.EQUALS, ("prod",))]),
        ("env=", [Requirement("env", Operator.EQUALS, ("",))]),
        ("env!=prod", [Requirement("env", Operator.NOT_EQUALS, ("prod",))]),
        ("env in (a,b)", [Requirement("env", Operator.IN, ("a", "b"))]),
        ("env in(a, b ,a)", [Requirement("env", Operator.IN, ("a", "b"))]),
        ("env notin (a)", [Requirement("env", Operator.NOT_IN, ("a",))]),
        ("env", [Requirement("env", Operator.EXISTS)]),
        ("!env", [Requirement("env", Operator.NOT_EXISTS)]),
        ("  ! env  ", [Requirement("env", Operator.NOT_EXISTS)]),
        ("example.com/role=web", [Requirement("example.com/role", Operator.EQUALS, ("web",))]),
        (
            "a=1,b!=2, c in (x,y),d notin (z),e,!f",
            [
                Requirement("a", Operator.EQUALS, ("1",)),
                Requirement("b", Operator.NOT_EQUALS, ("2",)),
                Requirement("c", Operator.IN, ("x", "y")),
                Requirement("d", Operator.NOT_IN, ("z",)),
                Requirement("e", Operator.EXISTS),
                Requirement("f", Operator.NOT_EXISTS),
            ],
        ),
        # "in" and "notin" are operators only after a key; as keys they are keys.
        ("in", [Requirement("in", Operator.EXISTS)]),
        ("notin=in", [Requirement("notin", Operator.EQUALS, ("in",))]),
    ],
)
def test_parse(text: str, expected: list[Requirement]) -> None:
    assert parse_selector(text).requirements == tuple(expected)


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "empty"),
        ("   ", 3, "empty"),
        ("env=prod,", 9, "expected a requirement after ','"),
        (",env", 0, "expected a label key"),
        ("env=prod,,x", 9, "expected a label key"),
        ("env=pr od", 7, "expected ',' or the end"),
        ("env in (a,b", 11, "expected ',' or ')'"),
        ("env in (", 8, "expected a value"),
        ("env in ()", 8, "at least one value"),
        ("env in a", 7, "expected '('"),
        ("env inn (a)", 4, "expected '=', '==', '!=', 'in', 'notin'"),
        ("env IN (a)", 4, "expected '=', '==', '!=', 'in', 'notin'"),
        ("env > 3", 4, "expected '='"),
        ("env=-x", 4, "label value '-x'"),
        ("env=a/b", 5, "unexpected '/'"),
        ("Bad.Prefix/env=1", 0, "DNS subdomain"),
        ("a=1, -b=2", 5, "label key '-b'"),
        ("!=x", 1, "before '!='"),
        ("!", 1, "expected a label key"),
        ("!env=x", 4, "expected ',' or the end"),
        ("env=x)", 5, "unexpected ')'"),
        ("env in (a b)", 10, "expected ',' or ')'"),
        ("env=é", 4, "unexpected 'é'"),
    ],
)
def test_syntax_errors_point_at_the_offending_position(
    text: str, position: int, message: str
) -> None:
    with pytest.raises(SelectorSyntaxError) as caught:
        parse_selector(text)
    error = caught.value
    assert error.position == position, error.detail
    assert message in error.message
    problem = error.to_dict()
    assert problem["status"] == 400
    assert problem["position"] == position
    assert problem["selector"] == text
    assert problem["pointer"] == f"{text}\n{' ' * position}^"
    assert f"at position {position}" in problem["detail"]


def test_too_long_selector_is_refused() -> None:
    with pytest.raises(SelectorSyntaxError, match="longer than"):
        parse_selector("a," * 3000 + "a")


# ---- matching ----


@pytest.mark.parametrize(
    ("text", "labels", "matches"),
    [
        ("env=prod", {"env": "prod"}, True),
        ("env=prod", {"env": "dev"}, False),
        ("env=prod", {}, False),
        ("env=", {"env": ""}, True),
        ("env=", {}, False),
        ("env!=prod", {"env": "dev"}, True),
        ("env!=prod", {}, True),  # absent keys satisfy != (as in Kubernetes)
        ("env!=prod", {"env": "prod"}, False),
        ("env in (a,b)", {"env": "b"}, True),
        ("env in (a,b)", {"env": "c"}, False),
        ("env in (a,b)", {}, False),
        ("env notin (a,b)", {"env": "c"}, True),
        ("env notin (a,b)", {}, True),
        ("env notin (a,b)", {"env": "a"}, False),
        ("env", {"env": ""}, True),
        ("env", {"other": "x"}, False),
        ("!env", {"other": "x"}, True),
        ("!env", {"env": "x"}, False),
        ("env=prod,tier=web", {"env": "prod", "tier": "web"}, True),
        ("env=prod,tier=web", {"env": "prod", "tier": "db"}, False),
    ],
)
def test_matches(text: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_selector(text).matches(labels) is matches


KEYS = ("env", "tier", "example.com/zone")
VALUES = ("a", "b", "c", "")


def _random_requirement(rng: random.Random) -> Requirement:
    operator = rng.choice(list(Operator))
    key = rng.choice(KEYS)
    if operator in (Operator.EQUALS, Operator.NOT_EQUALS):
        return Requirement(key, operator, (rng.choice(VALUES),))
    if operator in (Operator.IN, Operator.NOT_IN):
        values = tuple(dict.fromkeys(rng.choices(VALUES[:3], k=rng.randint(1, 3))))
        return Requirement(key, operator, values)
    return Requirement(key, operator)


def test_rendering_round_trips_and_and_semantics_hold() -> None:
    """Property: str(selector) parses back to itself; matching = all requirements match."""
    rng = random.Random(20261128)
    label_sets = [
        dict(zip(KEYS, combo, strict=True))
        for combo in itertools.product(("a", "b", ""), repeat=len(KEYS))
    ] + [{}, {"env": "a"}, {"tier": "c"}]
    for _ in range(300):
        selector = Selector(tuple(_random_requirement(rng) for _ in range(rng.randint(1, 4))))
        assert parse_selector(str(selector)) == selector
        for labels in label_sets:
            assert selector.matches(labels) == all(r.matches(labels) for r in selector.requirements)
            negated = {
                Operator.EQUALS: Operator.NOT_EQUALS,
                Operator.IN: Operator.NOT_IN,
                Operator.EXISTS: Operator.NOT_EXISTS,
            }
            for requirement in selector.requirements:
                if requirement.operator in negated:
                    opposite = Requirement(
                        requirement.key, negated[requirement.operator], requirement.values
                    )
                    assert opposite.matches(labels) is not requirement.matches(labels)
