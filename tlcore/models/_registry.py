"""Registry of model builders by name (timm style): one name, one spec, one builder."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TypeVar

from tlcore.models.spec import ModelSpec

Builder = Callable[..., object]
F = TypeVar("F", bound=Builder)

_MODELS: dict[str, tuple[ModelSpec, Builder]] = {}


def register_model(name: str, spec: ModelSpec) -> Callable[[F], F]:
    """Decorator: register ``builder`` under ``name`` with its ``spec``.

    The builder is called as ``builder(num_outputs=..., imagenet_state=...)`` and returns
    a :class:`TransferModel` with every layer transferred (``transfer="all"``). A name
    registered twice is an error.
    """
    if spec.name != name:
        raise ValueError(f"register_model({name!r}): spec.name is {spec.name!r}; they must match")

    def decorate(builder: F) -> F:
        if name in _MODELS:
            raise ValueError(
                f"model {name!r} is already registered (builder {_MODELS[name][1].__module__}."
                f"{_MODELS[name][1].__qualname__})"
            )
        _MODELS[name] = (spec, builder)
        return builder

    return decorate


def _ensure_loaded() -> None:
    # Importing the family modules registers the built-in models.
    import tlcore.models.inception  # noqa: F401
    import tlcore.models.patch_cnn  # noqa: F401
    import tlcore.models.resnet  # noqa: F401
    import tlcore.models.vgg  # noqa: F401


def model_names() -> list[str]:
    """Names of all registered models, sorted."""
    _ensure_loaded()
    return sorted(_MODELS)


def _lookup(name: str) -> tuple[ModelSpec, Builder]:
    _ensure_loaded()
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_MODELS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown model {name!r}; valid models: {', '.join(sorted(_MODELS))}.{hint}") from None


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; an unknown name raises KeyError listing the valid ones."""
    return _lookup(name)[0]


def get_builder(name: str) -> Builder:
    """The builder registered under ``name`` (KeyError as :func:`get_spec`)."""
    return _lookup(name)[1]
