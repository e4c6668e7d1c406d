"""Kubernetes label selectors: ``a=b,c!=d,tier in (edge,hpc),!legacy,gpu``."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from fleetplane.errors import Problem, ValidationError

Matcher = Callable[[dict[str, str]], bool]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EQUALITY = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*$")
_SET = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)\s*$")
_EXISTS = re.compile(rf"^\s*(?P<neg>!?)\s*(?P<key>{_KEY})\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return value in self.values
        if self.op == "!=":
            return value not in self.values
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return value not in self.values
        if self.op == "exists":
            return present
        return not present


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def __call__(self, labels: dict[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def parse_selector(text: str | None) -> Selector:
    """Parse a selector; ValidationError naming the bad term and the accepted forms."""
    if text is None or not text.strip():
        return Selector()
    return Selector(tuple(_requirement(term) for term in _terms(text)))


def _terms(text: str) -> list[str]:
    """Split on commas outside parentheses (``in (a,b)`` keeps its commas)."""
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return terms


def _requirement(term: str) -> Requirement:
    if match := _SET.match(term):
        values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
        return Requirement(match["key"], match["op"], values)
    if match := _EQUALITY.match(term):
        op = "=" if match["op"] in ("=", "==") else "!="
        return Requirement(match["key"], op, frozenset({match["value"]}))
    if match := _EXISTS.match(term):
        return Requirement(match["key"], "!exists" if match["neg"] else "exists")
    raise ValidationError(
        Problem(
            f"invalid label selector term {term.strip()!r}",
            field_path="labelSelector",
            hint="use key=value, key!=value, key in (a,b), key notin (a,b), key or !key, "
            "separated by commas",
        )
    )
