"""Type and range checks of configuration values against their dataclass annotations.

Values reach the configs from YAML study files, papermill (``-p seed abc`` arrives as the
string ``"abc"``, ``-p margin nan`` as the float NaN) and notebook cells; each wrong type gets
one message naming the field and the type it needs, before any range check could say
something misleading. Every number must be finite (a NaN passes every ``<``/``>`` test, so an
unchecked one slips through every range), and every ``int`` must fit in 64 bits (the step
and seed columns of the results are int64).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

INT64_MAX = 2**63 - 1
"""Largest ``int`` a numeric field takes: numpy, pandas and torch hold steps and seeds as int64."""


def describe(value: Any) -> str:
    """``str 'abc'``: the type and the value, for messages."""
    return f"{type(value).__name__} {value!r}"


def type_name(hint: Any) -> str:
    """``int`` -> ``an int``; ``tuple[int, ...]`` -> ``a list of ints``; unions joined by ``or``."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return "any value"
    if hint in (int, float, str, bool):
        return {int: "an int", float: "a number", str: "a string", bool: "true/false"}[hint]
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if not args:
            return "a list"
        return f"a list of {type_name(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def matches(value: Any, hint: Any, sequence_types: tuple[type, ...] = (list,)) -> bool:
    """Whether ``value`` fits the annotation ``hint``.

    int rejects bools and floats; float accepts ints; tuple/list annotations need one of
    ``sequence_types`` (YAML gives lists; a built config may hold tuples).
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is bool:
        return isinstance(value, bool)
    if hint is type(None):
        return value is None
    if origin in (tuple, list):
        if not isinstance(value, sequence_types):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return not args or all(matches(x, args[0], sequence_types) for x in value)
    if origin is dict:
        if not isinstance(value, dict):
            return False
        args = typing.get_args(hint)
        return not args or all(
            matches(k, args[0], sequence_types) and matches(x, args[1], sequence_types)
            for k, x in value.items()
        )
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a, sequence_types) for a in typing.get_args(hint))
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


@dataclass(frozen=True)
class Range:
    """The values a numeric field allows: finite, and from ``low`` to ``high`` (either may be
    ``None``: unbounded), each end included unless ``*_open``. For a list field (``hidden``)
    every element must be in the range."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self, integer: bool = False) -> str:
        """``a positive integer``, ``>= 0``, ``in [0, 1)``: what the messages say is allowed."""
        if self.low == 0 and self.low_open and self.high is None:
            return "a positive integer" if integer else "a positive number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{_number(self.low)}, {_number(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {_number(self.high)}"
        return "a finite number"

    def problem(self, value: Any, integer: bool = False) -> str | None:
        """What is wrong with number ``value`` (``None``: it is allowed)."""
        if isinstance(value, float) and not math.isfinite(value):
            what = self.describe(integer)
            if what.startswith("a positive"):
                what = "a finite positive number"
            elif not what.startswith("a "):
                what = f"a finite number {what}"
            return f"must be {what}, got {value!r}"
        if not self.contains(value):
            return f"must be {self.describe(integer)}, got {value!r}"
        if isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX:
            return f"must be {self.describe(integer)} and at most 2**63 - 1 (int64), got {value!r}"
        return None


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


FINITE = Range()
"""Any finite number (the range of a numeric field that states no other)."""


def field_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields."""
    return typing.get_type_hints(cls)


def numbers(value: Any) -> list[int | float]:
    """Every number in ``value``: itself, or the elements of a list or tuple (recursively).
    Bools are not numbers, and mappings are left to the dataclass they configure
    (``PretrainConfig.agent`` is checked by the algorithm's config)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, list | tuple):
        return [x for item in value for x in numbers(item)]
    return []


def range_problem(name: str, value: Any, hint: Any, allowed: Range = FINITE) -> str | None:
    """``"<name> must be <range>, got <value>"`` if a number in ``value`` (of annotation
    ``hint``, already type-checked) is outside ``allowed``; ``None`` if every number is in it."""
    integer = hint is int or (
        typing.get_origin(hint) in (tuple, list)
        and [a for a in typing.get_args(hint) if a is not Ellipsis] == [int]
    )
    for number in numbers(value):
        problem = allowed.problem(number, integer)
        if problem is None:
            continue
        if number is not value:  # an entry of a list (``hidden``)
            what = allowed.describe(integer)
            what = f"{what[2:]}s" if what.startswith("a ") else f"numbers {what}"
            return f"{name} must be a list of {what}, got {value!r}"
        return f"{name} {problem}"
    return None


def check_field_types(
    obj: Any, skip: tuple[str, ...] = (), ranges: Mapping[str, Range] | None = None
) -> None:
    """Check every field of dataclass ``obj`` against its annotation, then its numbers.

    Raises one ``ValueError`` for the first problem: ``"<field> must be <type>, got <type>
    <value>"`` for a wrong type, ``"<field> must be <range>, got <value>"`` for a number outside
    the field's entry of ``ranges`` (or, for a field without one, for any non-finite number or
    an int beyond 64 bits). Fields in ``skip`` are not checked.
    """
    hints = field_hints(type(obj))
    ranges = ranges or {}
    fields = [f for f in dataclasses.fields(obj) if f.name not in skip]
    for f in fields:
        value = getattr(obj, f.name)
        if not matches(value, hints[f.name], (list, tuple)):
            raise ValueError(f"{f.name} must be {type_name(hints[f.name])}, got {describe(value)}")
    for f in fields:
        problem = range_problem(
            f.name, getattr(obj, f.name), hints[f.name], ranges.get(f.name, FINITE)
        )
        if problem is not None:
            raise ValueError(problem)
