"""Click options generated from the step configs, and the config built back from them.

The typed configs (:class:`tlcore.experiment.StepConfig` and subclasses) declare every step
parameter once: name, type and default in the field, help text and valid values in
``OPTIONS`` (:mod:`tlcore.params`). This module turns them into click options:

* ``int`` fields take integers and also MLflow's spelling ``2.0``; ``2.5`` is refused;
* choices come from the model and reader registries, with "did you mean" on a near miss;
* an empty string means "the config's default" (how an ``MLproject`` passes an unset value).

:class:`StepCommand` prints every usage error as one ``Error:`` line.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable, Iterable
from typing import Any

import click

from tlcore.params import Opt, did_you_mean, options_of


class StepCommand(click.Command):
    """A click command whose usage errors (bad value, unknown option) are one line, no usage text."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise click.ClickException(exc.format_message()) from None


class MlflowInt(click.ParamType):
    """An integer; also ``2.0`` / ``2e0`` (MLflow passes numbers as typed or as floats). ``2.5`` fails.

    With ``zero_is_none``, 0 (and an empty value) become None.
    """

    name = "integer"

    def __init__(self, zero_is_none: bool = False):
        self.zero_is_none = zero_is_none

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, int) and not isinstance(value, bool):
            return None if self.zero_is_none and not value else value
        text = str(value).strip()
        if text == "" and self.zero_is_none:
            return None
        try:
            number = float(text)
        except ValueError:
            self.fail(f"{text!r} is not an integer", param, ctx)
        if not math.isfinite(number) or number != int(number):
            self.fail(f"{text} is not a whole number", param, ctx)
        out = int(number)
        return None if self.zero_is_none and out == 0 else out


class RegistryChoice(click.ParamType):
    """One of a list of names known when the command runs (a registry), with "did you mean"."""

    name = "choice"

    def __init__(self, choices: Callable[[], Iterable[str]] | Iterable[str]):
        self._choices = choices

    @property
    def choices(self) -> list[str]:
        return list(self._choices() if callable(self._choices) else self._choices)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:  # click >= 8.2
        return "[" + "|".join(self.choices) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        valid = self.choices
        if value in valid:
            return value
        self.fail(f"{value!r} is not one of {', '.join(valid)}.{did_you_mean(value, valid)}", param, ctx)


class ChoiceList(RegistryChoice):
    """Comma-separated names, each one of the choices; returned joined by commas."""

    name = "choices"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        return ",".join(super(ChoiceList, self).convert(p, param, ctx) for p in parts)


class BoolText(click.ParamType):
    """``true/false`` (also 1/0, yes/no, MLflow's ``True``): a value, not a flag, so MLproject can pass it."""

    name = "boolean"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on", "1.0"):
            return True
        if text in ("0", "false", "no", "off", "0.0", ""):
            return False
        self.fail(f"{value!r} is not true or false", param, ctx)


class KeepValue(click.ParamType):
    """SVCCA ``keep``: a variance share (``0.99``) or a number of directions (``20``)."""

    name = "share-or-count"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        try:
            return int(text) if re.fullmatch(r"[0-9]+", text) else float(text)
        except ValueError:
            self.fail(f"{text!r} is not a number", param, ctx)


class TextList(click.ParamType):
    """Comma-separated names as a tuple (``svcca,cka`` -> ``("svcca", "cka")``)."""

    name = "list"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        return tuple(p.strip() for p in str(value).split(",") if p.strip())


class ConfigOption(click.Option):
    """A click option generated from a config field (``config_field`` names it); MLproject lists it."""

    def __init__(self, *args: Any, config_field: str | None = None, mlproject: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.config_field = config_field
        self.mlproject = mlproject


def runtime_option(*decls: str, mlproject: bool = True, **kwargs: Any) -> Callable:
    """A hand-written option that is not a config parameter; ``mlproject=False`` keeps it out of MLproject."""
    return click.option(*decls, cls=ConfigOption, mlproject=mlproject, **kwargs)


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _param_type(hint: Any, opt: Opt) -> click.ParamType:
    valid = opt.choices
    if valid is not None:
        return RegistryChoice(valid)
    args = set(typing.get_args(hint)) - {type(None)}
    base = hint if not args else (args.pop() if len(args) == 1 else hint)
    if base is bool:
        return BoolText()
    if base is int:
        return MlflowInt(zero_is_none=opt.zero_is_none)
    if base is float:
        return click.FLOAT
    if hint == (float | int) or hint == (int | float):
        return KeepValue()
    if typing.get_origin(base) is tuple:
        return TextList()
    return click.STRING


def _cli_default(field: dataclasses.Field, opt: Opt) -> Any:
    """The default as the command line shows it (``""`` = computed by the config, e.g. data_root)."""
    if field.default is dataclasses.MISSING:
        return ""
    value = field.default
    if value is None:
        return 0 if opt.zero_is_none else ""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def cli_fields(config_cls: type, exclude: Iterable[str] = ()) -> dict[str, tuple[dataclasses.Field, Opt]]:
    """The config's fields offered on the command line, in declaration order."""
    skip = set(exclude)
    return {n: fo for n, fo in options_of(config_cls).items() if fo[1].cli and n not in skip}


def config_options(config_cls: type, *, exclude: Iterable[str] = (), multiple: Iterable[str] = ()) -> Callable:
    """Decorator adding one click option per command-line field of ``config_cls``.

    ``multiple``: fields that take several values (repeat the option or comma-separate).
    """
    hints = typing.get_type_hints(config_cls)
    several = set(multiple)

    def decorate(func: Callable) -> Callable:
        for name, (field, opt) in reversed(list(cli_fields(config_cls, exclude).items())):
            kwargs: dict[str, Any] = dict(type=_param_type(hints[name], opt), help=opt.help, show_default=True)
            default = _cli_default(field, opt)
            if name in several:
                if isinstance(kwargs["type"], RegistryChoice):
                    kwargs["type"] = ChoiceList(kwargs["type"]._choices)
                kwargs.update(multiple=True, default=(default,) if default != "" else ())
            else:
                kwargs["default"] = default
            func = click.option(option_name(name), name, cls=ConfigOption, config_field=name, **kwargs)(func)
        return func

    return decorate


def config_values(config_cls: type, values: dict[str, Any], exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The config fields among the click ``values``, with empty strings left out (the config's default)."""
    out: dict[str, Any] = {}
    for name in cli_fields(config_cls, exclude):
        if name not in values:
            continue
        value = values[name]
        if isinstance(value, str) and value == "" and not options_of(config_cls)[name][1].zero_is_none:
            continue
        out[name] = value
    return out


def build_config(config_cls: type, **values: Any) -> Any:
    """``config_cls(**values)``; its ValueError becomes one line naming the option (``--epochs``)."""
    try:
        return config_cls(**values)
    except ValueError as exc:
        raise click.ClickException(option_message(config_cls, str(exc))) from None


def option_message(config_cls: type, message: str) -> str:
    """``FinetuneConfig.epochs must be >= 1`` -> ``--epochs must be >= 1``."""
    prefix = f"{config_cls.__name__}."
    if message.startswith(prefix):
        field, _, rest = message[len(prefix):].partition(" ")
        field = field.rstrip(":")
        if field in options_of(config_cls) and options_of(config_cls)[field][1].cli:
            sep = ":" if message[len(prefix) + len(field)] == ":" else ""
            return f"{option_name(field)}{sep} {rest}"
    return message


def same_meaning(config: Any, key: str, text: str) -> bool:
    """True when ``text`` (a value as typed, e.g. by `mlflow run -P`) means ``config``'s value of ``key``.

    ``'1e-3'`` means 0.001, ``'0'`` means 0.0, ``'2.0'`` means 2, an empty data root means the
    default one. Used to skip re-logging a param the launcher already logged in its own spelling.
    """
    fields = options_of(type(config))
    if key not in fields:
        return False
    field, opt = fields[key]
    hints = typing.get_type_hints(type(config))
    current = getattr(config, key)
    try:
        parsed = _param_type(hints[key], opt).convert(text, None, None)
    except click.BadParameter:
        return False
    if isinstance(parsed, str) and parsed == "" and not opt.zero_is_none:
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        return default == current
    try:
        return getattr(dataclasses.replace(config, **{key: parsed}), key) == current
    except (ValueError, TypeError):
        return False


def config_argv(config: Any, exclude: Iterable[str] = ()) -> list[str]:
    """Command-line arguments that rebuild ``config`` through the generated options (for a child process)."""
    argv: list[str] = []
    for name, (_, opt) in cli_fields(type(config), exclude).items():
        value = getattr(config, name)
        if value is None:
            text = "0" if opt.zero_is_none else ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(map(str, value))
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = str(value)
        argv += [option_name(name), text]
    return argv
