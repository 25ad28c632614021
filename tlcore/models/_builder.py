"""``create_model``: one entry point for every (model, init, transfer) cell of the study."""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

from tlcore.models._registry import get_builder, get_spec
from tlcore.models.errors import NotApplicableError
from tlcore.models.hybrid import KEPT_STAGES, make_hybrid
from tlcore.models.spec import INIT_MODES, TRANSFER_MODES
from tlcore.models.transfer import TransferModel
from tlcore.models.weights import as_state_dict, check_state_dict, load_imagenet_state, load_state_file

DDSMState = str | os.PathLike | Mapping[str, Tensor] | nn.Module


def _check_choice(what: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        close = difflib.get_close_matches(str(value), list(valid), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}.{hint}")


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _ddsm_state_dict(ddsm_state: DDSMState) -> tuple[dict[str, Tensor], str]:
    if isinstance(ddsm_state, (str, os.PathLike)):
        return load_state_file(ddsm_state, what="DDSM state"), str(ddsm_state)
    return as_state_dict(ddsm_state, source="DDSM state"), "DDSM state"


def _load_ddsm(model: TransferModel, ddsm_state: DDSMState) -> None:
    state, source = _ddsm_state_dict(ddsm_state)
    if model.transfer == "all":
        check_state_dict(model, state, source=source)
        model.load_state_dict(state, strict=True)
        return
    kept = {k for k in model.state_dict() if k.split(".", 1)[0] in KEPT_STAGES}
    check_state_dict(model, state, source=source, keys=kept, allow_extra=True)
    model.load_state_dict({k: state[k] for k in kept}, strict=False)


def create_model(
    name: str,
    *,
    init: str = "random",
    transfer: str = "all",
    imagenet_weights: str | os.PathLike | None = None,
    ddsm_state: DDSMState | None = None,
    num_outputs: int = 1,
    seed: int | None = None,
) -> TransferModel:
    """Build a registered model for one cell of the study.

    ``init``: "random" | "imagenet" | "ddsm". ImageNet weights come from
    ``imagenet_weights`` (a state-dict file or a weights enum member) or torch's hub
    cache; they are loaded into the torchvision model before the head is replaced. A
    missing file raises :class:`WeightsNotFoundError` naming the path and file name;
    ``patch_cnn`` raises :class:`NotApplicableError`. "ddsm" loads ``ddsm_state`` (a path,
    a state dict or a model) of a DDSM-trained model of the same name: strictly (head
    included) for ``transfer="all"``; for "hybrid" only stem..block2 are taken.

    ``transfer``: "all" keeps every layer; "hybrid" keeps up to block2 and puts a light
    random top after it (:mod:`tlcore.models.hybrid`). ``seed`` makes the random parts
    reproducible without touching the global RNG. Arguments that do not apply to the
    chosen ``init`` (``imagenet_weights`` with init="random", ...) are ignored.
    """
    spec = get_spec(name)
    _check_choice("init", init, INIT_MODES)
    _check_choice("transfer", transfer, TRANSFER_MODES)
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    if init == "imagenet" and not spec.supports_imagenet:
        raise NotApplicableError(
            f"ImageNet initialisation does not apply to {name!r}: the paper's row is NA "
            f"(the patch-based CNN is not trained on ImageNet)"
        )
    if transfer == "hybrid" and not spec.supports_hybrid:
        raise NotApplicableError(f"hybrid transfer is not defined for {name!r}")
    if init == "ddsm" and ddsm_state is None:
        raise ValueError(f"init='ddsm' for {name!r} needs ddsm_state (path or state dict of a DDSM-trained {name})")

    builder = get_builder(name)
    with _seeded(seed):
        if init == "imagenet":
            state, path = load_imagenet_state(spec, imagenet_weights)
            model = builder(num_outputs=num_outputs, imagenet_state=state, source=str(path))
        else:
            model = builder(num_outputs=num_outputs)
        model.init = init
        if transfer == "hybrid":
            make_hybrid(model)
        if init == "ddsm":
            assert ddsm_state is not None
            _load_ddsm(model, ddsm_state)
    if init == "random":
        model.fresh_names = ("",)
    elif transfer == "hybrid":
        model.fresh_names = ("block3", "block4", "head")
    elif init == "imagenet":
        model.fresh_names = model.head_names
    else:
        model.fresh_names = ()
    return model
