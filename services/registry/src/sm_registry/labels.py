"""Node labels and label selectors (Kubernetes-like).

Keys: an optional DNS-subdomain prefix and ``/``, then a name::

    app            example.com/role          k8s.io/zone-a

- name: 1-63 characters, ``[A-Za-z0-9]`` at both ends, ``-``, ``_``, ``.`` inside;
- prefix: at most 253 characters, dot-separated DNS labels (lowercase
  ``[a-z0-9]`` at both ends, ``-`` inside, each at most 63 characters).

Values: empty, or 1-63 characters with the same rule as a key's name.

Selectors: requirements separated by commas, all of which must hold (AND)::

    k=v   k==v      the label k has the value v
    k!=v            k is absent, or has another value
    k in (a,b)      k has one of the values
    k notin (a,b)   k is absent, or has none of the values
    k               k is present (any value)
    !k              k is absent

Whitespace between tokens is ignored. ``!=`` and ``notin`` match nodes that
lack the key, as in Kubernetes. An empty selector is an error here (not
"everything"): targeting every node must be said explicitly. Errors name the
0-based character position where the selector stops making sense.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from sm_shared.problems import BadRequest

MAX_LABELS: Final = 64
MAX_SELECTOR_LENGTH: Final = 4096
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# Characters a key or a value token may contain; the rules above are checked after.
_TOKEN_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./"
)
_VALUE_CHARS: Final = _TOKEN_CHARS - {"/"}


class InvalidLabel(BadRequest):
    """A label key or value breaks the rules above (400)."""

    def __init__(self, detail: str, *, key: str) -> None:
        super().__init__(detail, type_="/problems/invalid-label", label=key)


class SelectorSyntaxError(BadRequest):
    """A selector does not parse (400); ``position`` is where it went wrong."""

    def __init__(self, message: str, *, selector: str, position: int) -> None:
        super().__init__(
            f"invalid label selector: {message} at position {position}",
            type_="/problems/invalid-selector",
            selector=selector,
            position=position,
            pointer=f"{selector}\n{' ' * position}^",
        )
        self.message = message
        self.position = position


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label key, or None when it is."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return f"label key {key!r} has an empty prefix before '/'"
        if len(prefix) > 253:
            return f"the prefix of label key {key!r} is longer than 253 characters"
        if not all(_DNS_LABEL.fullmatch(part) for part in prefix.split(".")):
            return (
                f"the prefix of label key {key!r} is not a DNS subdomain "
                "(lowercase letters, digits, '-' and '.')"
            )
    if not name:
        return f"label key {key!r} has an empty name"
    if len(name) > 63:
        return f"the name of label key {key!r} is longer than 63 characters"
    if not _NAME.fullmatch(name):
        return (
            f"the name of label key {key!r} must start and end with a letter or digit "
            "and contain only letters, digits, '-', '_' and '.'"
        )
    return None


def value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None when it is."""
    if value == "":
        return None
    if len(value) > 63:
        return f"label value {value!r} is longer than 63 characters"
    if not _NAME.fullmatch(value):
        return (
            f"label value {value!r} must start and end with a letter or digit "
            "and contain only letters, digits, '-', '_' and '.'"
        )
    return None


def validate_key(key: str) -> str:
    problem = key_problem(key)
    if problem is not None:
        raise InvalidLabel(problem, key=key)
    return key


def validate_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` checked key by key (raises ``InvalidLabel``); a plain dict."""
    if len(labels) > MAX_LABELS:
        raise InvalidLabel(f"a node has at most {MAX_LABELS} labels", key="")
    for key, value in labels.items():
        validate_key(key)
        problem = value_problem(value)
        if problem is not None:
            raise InvalidLabel(problem, key=key)
    return dict(labels)


class Operator(StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    NOT_EXISTS = "!"


@dataclass(frozen=True)
class Requirement:
    """One comma-separated part of a selector."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        match self.operator:
            case Operator.EQUALS:
                return value == self.values[0]
            case Operator.NOT_EQUALS:
                return value != self.values[0]
            case Operator.IN:
                return value is not None and value in self.values
            case Operator.NOT_IN:
                return value is None or value not in self.values
            case Operator.EXISTS:
                return value is not None
            case Operator.NOT_EXISTS:
                return value is None

    def __str__(self) -> str:
        match self.operator:
            case Operator.EQUALS | Operator.NOT_EQUALS:
                return f"{self.key}{self.operator.value}{self.values[0]}"
            case Operator.IN | Operator.NOT_IN:
                return f"{self.key} {self.operator.value} ({','.join(self.values)})"
            case Operator.EXISTS:
                return self.key
            case Operator.NOT_EXISTS:
                return f"!{self.key}"


@dataclass(frozen=True)
class Selector:
    """Requirements that must all hold."""

    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


class _Parser:
    """Recursive descent over the selector text; positions are character offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str, position: int | None = None) -> SelectorSyntaxError:
        return SelectorSyntaxError(
            message, selector=self.text, position=self.pos if position is None else position
        )

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def word(self, chars: frozenset[str]) -> tuple[str, int]:
        """The run of ``chars`` at the current position (maybe empty) and where it starts."""
        self.skip_space()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1
        return self.text[start : self.pos], start

    def describe_here(self) -> str:
        return (
            f"unexpected {self.text[self.pos]!r}" if self.pos < len(self.text) else "unexpected end"
        )

    def key(self) -> str:
        key, start = self.word(_TOKEN_CHARS)
        if not key:
            raise self.fail(f"expected a label key, {self.describe_here()}")
        problem = key_problem(key)
        if problem is not None:
            raise self.fail(problem, start)
        return key

    def value(self) -> str:
        value, start = self.word(_VALUE_CHARS)
        problem = value_problem(value)
        if problem is not None:
            raise self.fail(problem, start)
        return value

    def value_list(self) -> tuple[str, ...]:
        if self.peek() != "(":
            raise self.fail(f"expected '(', {self.describe_here()}")
        self.pos += 1
        values: list[str] = []
        while True:
            self.skip_space()
            start = self.pos
            value = self.value()
            if value == "" and self.peek() not in (",", ")"):
                raise self.fail(f"expected a value, {self.describe_here()}")
            if value == "" and self.peek() == ")" and not values:
                raise self.fail("expected at least one value", start)
            values.append(value)
            following = self.peek()
            if following == ",":
                self.pos += 1
                continue
            if following == ")":
                self.pos += 1
                return tuple(dict.fromkeys(values))
            raise self.fail(f"expected ',' or ')', {self.describe_here()}")

    def requirement(self) -> Requirement:
        if self.peek() == "!":
            self.pos += 1
            if self.peek() == "=":
                raise self.fail("expected a label key before '!='")
            return Requirement(self.key(), Operator.NOT_EXISTS)
        key = self.key()
        following = self.peek()
        if following in ("", ","):
            return Requirement(key, Operator.EXISTS)
        if self.text.startswith("!=", self.pos):
            self.pos += 2
            return Requirement(key, Operator.NOT_EQUALS, (self.value(),))
        if self.text.startswith("==", self.pos):
            self.pos += 2
            return Requirement(key, Operator.EQUALS, (self.value(),))
        if following == "=":
            self.pos += 1
            return Requirement(key, Operator.EQUALS, (self.value(),))
        word, start = self.word(frozenset("abcdefghijklmnopqrstuvwxyz"))
        if word == "in":
            return Requirement(key, Operator.IN, self.value_list())
        if word == "notin":
            return Requirement(key, Operator.NOT_IN, self.value_list())
        self.pos = start
        raise self.fail(
            f"expected '=', '==', '!=', 'in', 'notin', ',' or the end after key {key!r}, "
            f"{self.describe_here()}"
        )

    def selector(self) -> Selector:
        if self.at_end():
            raise self.fail("the selector is empty")
        requirements = [self.requirement()]
        while not self.at_end():
            if self.peek() != ",":
                raise self.fail(f"expected ',' or the end, {self.describe_here()}")
            self.pos += 1
            if self.at_end():
                raise self.fail("expected a requirement after ','")
            requirements.append(self.requirement())
        return Selector(tuple(requirements))


def parse_selector(text: str) -> Selector:
    """Parse a selector (raises ``SelectorSyntaxError``, a 400 problem with its position)."""
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorSyntaxError(
            f"longer than {MAX_SELECTOR_LENGTH} characters",
            selector=text[:64] + "…",
            position=MAX_SELECTOR_LENGTH,
        )
    return _Parser(text).selector()
