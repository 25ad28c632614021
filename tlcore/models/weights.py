"""Finding and loading weight files: ImageNet (torchvision files, never downloaded) and DDSM.

ImageNet weights are looked up in torch's hub cache,
``torch.hub.get_dir()/checkpoints/<file name of the weights enum url>`` (``$TORCH_HOME``
is honoured), unless an explicit state-dict file is given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import get_weight

from tlcore.models.errors import StateDictMismatchError, WeightsNotFoundError
from tlcore.models.spec import ModelSpec

StateDict = dict[str, Tensor]


def hub_checkpoint_dir() -> Path:
    """torch's hub checkpoint folder (``$TORCH_HOME/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_file_name(member: str) -> str:
    """File name torchvision uses for a weights enum member, e.g.
    ``"ResNet50_Weights.IMAGENET1K_V1"`` -> ``"resnet50-0676ba61.pth"``."""
    return os.path.basename(urlparse(get_weight(member).url).path)


def weights_members(spec: ModelSpec) -> list[str]:
    """All members of the spec's weights enum, the spec's default first."""
    if spec.imagenet_weights is None:
        return []
    enum_name = spec.imagenet_weights.split(".")[0]
    members = [f"{enum_name}.{m.name}" for m in type(get_weight(spec.imagenet_weights))]
    return [spec.imagenet_weights] + [m for m in members if m != spec.imagenet_weights]


def _resolve_member(spec: ModelSpec, text: str) -> str | None:
    for member in weights_members(spec):
        if text in (member, member.split(".", 1)[1]):
            return member
    return None


def resolve_imagenet_file(spec: ModelSpec, imagenet_weights: str | os.PathLike | None = None) -> Path:
    """Path of the ImageNet state-dict file to use for ``spec``.

    ``imagenet_weights`` may be a path to a state-dict file, or a weights enum member
    (``"ResNet50_Weights.IMAGENET1K_V2"`` or ``"IMAGENET1K_V2"``) looked up in the hub
    cache. With None the spec's default member is looked up, then any other member of
    the enum whose file is present. Raises :class:`WeightsNotFoundError` saying where to
    put which file.
    """
    members = weights_members(spec)
    if not members:
        raise WeightsNotFoundError(f"model {spec.name!r} has no ImageNet weights")
    ckpt = hub_checkpoint_dir()
    if imagenet_weights is not None:
        member = _resolve_member(spec, str(imagenet_weights))
        if member is None and "_Weights." in str(imagenet_weights):
            raise WeightsNotFoundError(
                f"{imagenet_weights!r} is not a weights enum member of {spec.name!r}; valid: {', '.join(members)}"
            )
        if member is None:
            path = Path(imagenet_weights).expanduser()
            if not path.is_file():
                raise WeightsNotFoundError(
                    f"ImageNet weights file for {spec.name!r} not found: {path} "
                    f"(expected a state-dict file, e.g. {weights_file_name(members[0])} from {members[0]})"
                )
            return path
        path = ckpt / weights_file_name(member)
        if not path.is_file():
            raise WeightsNotFoundError(
                f"ImageNet weights for {spec.name!r} ({member}) not found: put the file "
                f"{weights_file_name(member)} at {path} (torch hub cache; set $TORCH_HOME to move it)"
            )
        return path
    for member in members:
        path = ckpt / weights_file_name(member)
        if path.is_file():
            return path
    default = members[0]
    others = ", ".join(f"{weights_file_name(m)} ({m})" for m in members[1:])
    raise WeightsNotFoundError(
        f"ImageNet weights for {spec.name!r} not found: put the file {weights_file_name(default)} "
        f"({default}, {get_weight(default).url}) at {ckpt / weights_file_name(default)} "
        f"(torch hub cache, honours $TORCH_HOME), or pass imagenet_weights=<path to a state-dict file>."
        + (f" Also accepted in that folder: {others}." if others else "")
        + " Nothing is downloaded automatically."
    )


def load_state_file(path: str | os.PathLike, *, what: str = "state dict") -> StateDict:
    """Load a state dict saved with ``torch.save`` (``weights_only=True``, onto the CPU).

    A dict wrapping it under ``state_dict`` or ``model`` is unwrapped, and a leading
    ``module.`` (DataParallel) is stripped from the keys.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"{what} file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise StateDictMismatchError(f"{path}: cannot be read as a {what} ({type(exc).__name__}: {exc})") from exc
    return as_state_dict(obj, source=str(path))


def as_state_dict(obj: object, *, source: str = "state dict") -> StateDict:
    """Normalise a loaded object (state dict, wrapped state dict or module) into a flat state dict."""
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict())
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping):
                obj = inner
                break
        out: StateDict = {}
        for key, value in obj.items():
            if not isinstance(value, Tensor):
                raise StateDictMismatchError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
            out[key[len("module.") :] if key.startswith("module.") else key] = value
        return out
    raise StateDictMismatchError(f"{source}: expected a state dict (mapping of tensors), got {type(obj).__name__}")


def _short(keys: list[str], n: int = 8) -> str:
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def check_state_dict(
    module: nn.Module,
    state: Mapping[str, Tensor],
    *,
    source: str,
    keys: set[str] | None = None,
    allow_extra: bool = False,
) -> None:
    """Raise :class:`StateDictMismatchError` unless ``state`` fits ``module`` exactly.

    ``keys`` restricts the check to those keys of the module's state dict; ``allow_extra``
    tolerates keys in ``state`` the module lacks.
    """
    own = module.state_dict()
    wanted = set(own) if keys is None else keys
    missing = sorted(k for k in wanted if k not in state)
    unexpected = [] if allow_extra else sorted(k for k in state if k not in own)
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in wanted
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {_short(shapes, 4)}")
        name = getattr(getattr(module, "spec", None), "name", None) or type(module).__name__
        raise StateDictMismatchError(f"{source} does not fit the {name} architecture: " + "; ".join(parts))


def load_imagenet_state(spec: ModelSpec, imagenet_weights: str | os.PathLike | None = None) -> tuple[StateDict, Path]:
    """Resolve and load the ImageNet state dict for ``spec`` (see :func:`resolve_imagenet_file`)."""
    path = resolve_imagenet_file(spec, imagenet_weights)
    return load_state_file(path, what=f"ImageNet weights for {spec.name}"), path


def load_into_torchvision(model: nn.Module, state: Mapping[str, Tensor], *, source: str) -> None:
    """Strictly load a torchvision state dict into a freshly built torchvision model."""
    check_state_dict(model, state, source=source)
    model.load_state_dict(state, strict=True)
