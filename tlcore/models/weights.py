"""Finding, fetching and loading weight files: ImageNet (torchvision's files) and DDSM.

ImageNet weights are what torchvision's weights enums name (``ResNet50_Weights.IMAGENET1K_V1``)
and live where torchvision puts them: torch's hub cache,
``torch.hub.get_dir()/checkpoints/<file name of the enum's url>`` (``$TORCH_HOME`` is
honoured). A file missing from the cache is downloaded from the enum's url (checked against
the hash prefix in its name) unless ``$TLSTUDY_WEIGHTS_DOWNLOAD=0``; ``$TLSTUDY_WEIGHTS_MIRROR``
replaces the url's folder (an internal mirror, or ``file:///shared/models/``). For compute
nodes without network, ``tlstudy weights fetch`` fills the cache beforehand.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
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


#: Environment switch: ``0`` / ``false`` / ``no`` never downloads (the cache must hold the files).
DOWNLOAD_ENV = "TLSTUDY_WEIGHTS_DOWNLOAD"
#: Environment override of the folder the files are downloaded from (http(s):// or file://).
MIRROR_ENV = "TLSTUDY_WEIGHTS_MIRROR"
#: Seconds a download may wait for the server before it counts as "no network here".
DOWNLOAD_TIMEOUT_S = 30.0
_HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's convention: <name>-<sha256 prefix>.<ext>


def download_allowed() -> bool:
    """False when ``$TLSTUDY_WEIGHTS_DOWNLOAD`` is ``0``, ``false`` or ``no``."""
    return os.environ.get(DOWNLOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def weights_url(member: str) -> str:
    """Where ``member``'s file is downloaded from: its enum url, or the same file under ``$TLSTUDY_WEIGHTS_MIRROR``."""
    url = get_weight(member).url
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{weights_file_name(member)}" if mirror else url


def cached_weights_path(member: str) -> Path:
    """Where torchvision caches ``member``'s file (it may not be there)."""
    return hub_checkpoint_dir() / weights_file_name(member)


def fetch_command(model: str) -> str:
    """The command that fills the cache for ``model`` on a machine with network."""
    return f"tlstudy weights fetch --model {model}"


def download_weights(member: str, *, progress: bool = False) -> Path:
    """Download ``member``'s file into the hub cache (atomically, hash-checked); return its path.

    Raises :class:`WeightsNotFoundError` in one line naming the url, the file and the cause
    (no network, HTTP error, hash mismatch). A file already cached is returned as it is.
    """
    path = cached_weights_path(member)
    if path.is_file():
        return path
    url = weights_url(member)
    match = _HASH_PREFIX.search(path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, partial.open("wb") as out:
            total, done = int(response.headers.get("Content-Length") or 0), 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress and total:
                    print(f"\r{path.name}: {done * 100 // total}%", end="", flush=True)
        if progress:
            print()
        if match and not digest.hexdigest().startswith(match.group(1)):
            raise WeightsNotFoundError(
                f"downloaded {url} but its sha256 {digest.hexdigest()[:12]}... does not start with "
                f"{match.group(1)} as the file name {path.name} says; the file was discarded"
            )
        os.replace(partial, path)
        return path
    except WeightsNotFoundError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:  # no network, HTTP error, bad url, full disk
        reason = getattr(exc, "reason", None) or exc
        raise WeightsNotFoundError(f"cannot download {url} ({type(exc).__name__}: {reason})") from exc
    finally:
        partial.unlink(missing_ok=True)


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


def _missing(spec: ModelSpec, member: str, cause: str) -> WeightsNotFoundError:
    """The one-line error for ImageNet weights that are neither cached nor downloadable."""
    path = cached_weights_path(member)
    others = ", ".join(f"{weights_file_name(m)} ({m})" for m in weights_members(spec) if m != member)
    return WeightsNotFoundError(
        f"ImageNet weights for {spec.name!r} ({member}) are not at {path} and {cause}: run "
        f"`{fetch_command(spec.name)}` on a machine with network (same $TORCH_HOME), or put the file "
        f"{path.name} from {get_weight(member).url} there"
        + (f"; also accepted in that folder: {others}" if others else "")
    )


def _cached_or_downloaded(spec: ModelSpec, member: str, download: bool) -> Path:
    path = cached_weights_path(member)
    if path.is_file():
        return path
    if not download:
        raise _missing(spec, member, f"downloads are off (${DOWNLOAD_ENV}=0)")
    try:
        return download_weights(member)
    except WeightsNotFoundError as exc:
        raise _missing(spec, member, str(exc)) from exc


def resolve_imagenet_file(
    spec: ModelSpec, imagenet_weights: str | os.PathLike | None = None, *, download: bool | None = None
) -> Path:
    """Path of the ImageNet state-dict file to use for ``spec``.

    ``imagenet_weights`` may be a path to a state-dict file, or a weights enum member
    (``"ResNet50_Weights.IMAGENET1K_V2"`` or ``"IMAGENET1K_V2"``) looked up in the hub
    cache. With None the spec's default member is used, or any other member of the enum
    whose file is already cached. A member missing from the cache is downloaded when
    ``download`` (default: :func:`download_allowed`). Raises :class:`WeightsNotFoundError`
    naming the expected path and the fetch command.
    """
    members = weights_members(spec)
    if not members:
        raise WeightsNotFoundError(f"model {spec.name!r} has no ImageNet weights")
    download = download_allowed() if download is None else download
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
        return _cached_or_downloaded(spec, member, download)
    for member in members:
        path = cached_weights_path(member)
        if path.is_file():
            return path
    return _cached_or_downloaded(spec, members[0], download)


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
            out[key.removeprefix("module.")] = value
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
