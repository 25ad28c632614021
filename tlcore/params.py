"""What a step config says about each of its parameters, beyond its name, type and default.

A step config (:class:`tlcore.experiment.StepConfig` and its subclasses) is the one place a
parameter is declared. The field gives the name, type and default; the class attribute
``OPTIONS`` (one :class:`Opt` per field) adds the help text, where valid values come from
and whether the parameter is offered on the command line. ``pipelines`` builds the click
options and the ``MLproject`` from these; nothing here knows click or MLflow.

Also the checks of types and ranges every config runs in ``__post_init__``: each raises a
``ValueError`` whose message is one line naming the parameter and the value.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def model_choices() -> list[str]:
    """Names of the registered models."""
    from tlcore.models import model_names

    return model_names()


def dataset_choices() -> list[str]:
    """Names of the registered dataset readers."""
    from tlcore.data.registry import reader_names

    return reader_names()


@dataclass(frozen=True)
class Opt:
    """Command-line facts of one config field.

    ``choices``: a tuple of valid values or a function returning them (a registry's names);
    ``cli=False`` keeps an internal setting off the command line and out of ``MLproject``;
    ``zero_is_none``: for ``int | None`` fields, 0 on the command line means None (the default
    behaviour the help text names); ``multiple``: a tuple field given comma-separated.
    """

    help: str
    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None
    cli: bool = True
    zero_is_none: bool = False

    def valid_values(self) -> list[str] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)


def options_of(config_cls: type) -> dict[str, tuple[dataclasses.Field, Opt]]:
    """``{field name: (field, Opt)}`` of a step config, in field order.

    Every field must have an :class:`Opt` in the class's (or a base class's) ``OPTIONS``,
    so that a new parameter cannot be added without its help text.
    """
    merged: dict[str, Opt] = {}
    for klass in reversed(config_cls.__mro__):
        merged.update(getattr(klass, "__dict__", {}).get("OPTIONS", {}))
    out: dict[str, tuple[dataclasses.Field, Opt]] = {}
    for f in dataclasses.fields(config_cls):
        if f.name not in merged:
            raise TypeError(f"{config_cls.__name__}.{f.name} has no entry in OPTIONS (help text, choices)")
        out[f.name] = (f, merged[f.name])
    return out


def did_you_mean(value: str, valid: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for a near miss, else an empty string."""
    close = difflib.get_close_matches(str(value), list(valid), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_choice(owner: str, name: str, value: Any, valid: Iterable[str]) -> None:
    """ValueError naming the parameter, the value, the valid ones and a near miss."""
    valid = list(valid)
    if value not in valid:
        raise ValueError(f"{owner}.{name}: unknown value {value!r}; valid: {', '.join(valid)}.{did_you_mean(value, valid)}")


def check_int(owner: str, name: str, value: Any, *, minimum: int | None = None, optional: bool = False) -> None:
    """ValueError unless ``value`` is an int (not a bool) >= ``minimum`` (or None if ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}.{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {value}")


def check_number(owner: str, name: str, value: Any, *, positive: bool = False, minimum: float | None = None) -> None:
    """ValueError unless ``value`` is a finite number (> 0 if ``positive``, >= ``minimum``)."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{owner}.{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{owner}.{name} must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {value}")


def check_options(config: Any, checks: Mapping[str, Callable[[str, str, Any], None]] | None = None) -> None:
    """Check every field that declares ``choices`` against them (plus extra per-field checks)."""
    owner = type(config).__name__
    for name, (_, opt) in options_of(type(config)).items():
        valid = opt.valid_values()
        if valid is not None:
            check_choice(owner, name, getattr(config, name), valid)
    for name, check in (checks or {}).items():
        check(owner, name, getattr(config, name))
