"""The one validator of every config dataclass: strict types, allowed choices, numeric ranges, known keys.

Each error is one line naming the setting, the value and what is allowed, raised before anything is
written. Configs declare ``choices`` ({key: allowed values}) and ``ranges`` ((keys, test, what)) tables
and call `check` from ``__post_init__``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable, Iterable

from elmlib.errors import UserError

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

AT_LEAST_1 = (lambda v: v >= 1, "an integer >= 1")
POSITIVE_INT = (lambda v: isinstance(v, int) and v >= 1, "a positive integer")
NONNEGATIVE_INT = (lambda v: v >= 0, "an integer >= 0 (0 = the default)")
POSITIVE = (lambda v: v > 0, "a number > 0")
NONNEGATIVE = (lambda v: v >= 0, "a number >= 0")
UNIT = (lambda v: 0 <= v <= 1, "a value in [0, 1]")
OPEN_UNIT = (lambda v: 0 < v <= 1, "a value in (0, 1]")

Ranges = Iterable[tuple[tuple[str, ...], tuple[Callable[[Any], bool], str]]]


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise UserError(f"setting {key}={value!r} is not allowed; expected true or false")


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip())
    raise UserError(f"setting {key}={value!r} is not allowed; expected an integer")


def _as_float(key: str, value: Any, parse: Callable[[Any], float]) -> float:
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        number = parse(value)
    except ValueError:
        raise UserError(f"setting {key}={value!r} is not allowed; expected a number") from None
    if not math.isfinite(number):
        raise UserError(f"setting {key}={value!r} is not allowed; expected a finite number")
    return number


def coerce(key: str, value: Any, default: Any, parse_float: Callable[[Any], float] = float) -> Any:
    """``value`` as the type of ``default``, strictly: a bool from true/false (or 1/0), an int from an
    integer (never 4.7, never a bool), a finite float from a number; strings (``--set``) are parsed."""
    kind = type(default)
    if kind is bool:
        return _as_bool(key, value)
    if kind is int:
        return _as_int(key, value)
    if kind is float:
        return _as_float(key, value, parse_float)
    if not isinstance(value, str):
        raise UserError(f"setting {key}={value!r} is not allowed; expected a string")
    return value


def check(config: Any, choices: dict[str, Callable[[], Iterable]], ranges: Ranges, owner: str | None = None) -> None:
    """Every choice setting of ``config`` is one of its allowed values; every ranged one is a number
    (not a bool) that passes its test. Errors name ``setting <key>``, or ``<owner>.<key>`` when given
    (a dataclass built in code rather than from a config)."""
    name = (lambda key: f"{owner}.{key}") if owner else (lambda key: f"setting {key}")
    for key, allowed in choices.items():
        options = tuple(allowed())
        if getattr(config, key) not in options:
            raise UserError(f"{name(key)}={getattr(config, key)!r} is not allowed; expected one of {options}")
    for keys, (test, what) in ranges:
        for key in keys:
            value = getattr(config, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not test(value):
                raise UserError(f"{name(key)}={value!r} is not allowed; expected {what}")


def build(cls: type, values: dict[str, Any], parse_float: dict[str, Callable[[Any], float]] | None = None) -> Any:
    """``cls(**values)`` after refusing unknown keys and coercing each value to its field's type."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise UserError(f"unknown setting(s) {unknown}; allowed: {sorted(defaults)}")
    parsers = parse_float or {}
    return cls(**{k: coerce(k, v, defaults[k], parsers.get(k, float)) for k, v in values.items()})


def preset(scale: str, presets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The settings of one scale preset; an unknown scale is one line naming the allowed ones."""
    if scale not in presets:
        raise UserError(f"scale={scale!r} is not allowed; expected one of {tuple(presets)}")
    return {"scale": scale, **presets[scale]}
