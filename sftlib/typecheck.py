"""Type checks of configuration values against their dataclass annotations.

Values reach the configs from YAML study files, papermill (``-p seed abc`` arrives as the
string ``"abc"``) and notebook cells; each wrong type gets one message naming the field and
the type it needs, before any range check could say something misleading.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


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


def field_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields."""
    return typing.get_type_hints(cls)


def check_field_types(obj: Any, skip: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError("<field> must be <type>, got <type> <value>")`` for the first field
    of dataclass ``obj`` whose value does not fit its annotation."""
    hints = field_hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        value = getattr(obj, f.name)
        if not matches(value, hints[f.name], (list, tuple)):
            raise ValueError(f"{f.name} must be {type_name(hints[f.name])}, got {describe(value)}")
