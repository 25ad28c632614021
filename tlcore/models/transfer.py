"""The common model wrapper every registered model returns: :class:`TransferModel`.

A model is a chain ``stem -> block1 -> block2 -> block3 -> block4 [-> top] -> head`` with
an optional auxiliary head fed by block3 (Inception-v3). Inputs are float images in
[0, 1]; the model applies its own normalisation (ImageNet mean/std stored as buffers).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tlcore.models.spec import ModelSpec

STAGES: tuple[str, ...] = ("stem", "block1", "block2", "block3", "block4")
_ANALYSIS_TO_STAGE = {"conv1": "stem", "block1": "block1", "block2": "block2", "block3": "block3", "block4": "block4"}


@dataclass
class Backbone:
    """The five stages of a convolutional body, cut out of a torchvision model.

    ``channels`` gives each stage's output channels; ``tv_prefix`` maps a stage (or
    ``head``/``aux``) to the prefix its children carry in the torchvision state dict, so
    that ``<stage>.<rest>`` in ours is ``<prefix><rest>`` in torchvision's.
    """

    stem: nn.Module
    block1: nn.Module
    block2: nn.Module
    block3: nn.Module
    block4: nn.Module
    channels: dict[str, int]
    tv_prefix: dict[str, str] = field(default_factory=dict)
    inception_transform: bool = False
    arch: str = ""


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (only those with requires_grad if ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class Normalize(nn.Module):
    """(x - mean) / std on (B, 3, H, W) images in [0, 1]; 1-channel input is repeated to 3.

    With ``inception_transform`` the result is further mapped as torchvision's
    ``transform_input=True`` does for the Google Inception-v3 weights (net effect:
    (x - 0.5) / 0.5).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], inception_transform: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.inception_transform = inception_transform

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images shaped (B, 3, H, W) (or (B, 1, H, W)), got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        z = (x - self.mean) / self.std
        if self.inception_transform:
            z = z * (self.std / 0.5) + (self.mean - 0.5) / 0.5
        return z


class TransferModel(nn.Module):
    """A binary classifier built from a (possibly pre-trained) backbone.

    ``forward(x)`` takes float images (B, 3, H, W) in [0, 1] and returns logits
    (B, num_outputs); ``sigmoid`` of the single logit is P(malignant).
    Attributes: ``spec`` (:class:`ModelSpec`), ``init`` and ``transfer`` (how it was
    made, set by :func:`create_model`).
    """

    def __init__(
        self,
        spec: ModelSpec,
        backbone: Backbone,
        head: nn.Module,
        *,
        head_names: Sequence[str],
        top: nn.Module | None = None,
        aux: nn.Module | None = None,
        new_top_names: Sequence[str] = (),
        aux_min_size: int = 0,
    ):
        super().__init__()
        self.spec = spec
        self.normalize = Normalize(spec.mean, spec.std, backbone.inception_transform)
        self.stem = backbone.stem
        self.block1 = backbone.block1
        self.block2 = backbone.block2
        self.block3 = backbone.block3
        self.block4 = backbone.block4
        self.top = top
        self.head = head
        self.aux = aux
        self.channels = dict(backbone.channels)
        self.tv_prefix = dict(backbone.tv_prefix)
        self.arch = backbone.arch
        self.head_names = tuple(head_names)
        self.new_top_names = tuple(new_top_names)
        self.aux_min_size = aux_min_size
        self.init = "random"
        self.transfer = "all"
        # Qualified names of freshly initialised modules ("" = the whole model); used by
        # tlcore.models.hybrid.parameter_report to count kept vs new parameters.
        self.fresh_names: tuple[str, ...] = ("",)
        self._aux_warned = False

    # -- forward -----------------------------------------------------------------------
    def _body(self, x: Tensor, want_aux: bool) -> tuple[Tensor, Tensor | None]:
        h = self.normalize(x)
        h = self.stem(h)
        h = self.block1(h)
        h = self.block2(h)
        h = self.block3(h)
        aux_logits: Tensor | None = None
        if want_aux and self.aux is not None:
            if min(h.shape[-2:]) >= self.aux_min_size:
                aux_logits = self.aux(h)
            elif not self._aux_warned:
                self._aux_warned = True
                warnings.warn(
                    f"{self.spec.name}: block3 output {tuple(h.shape[-2:])} is smaller than the "
                    f"{self.aux_min_size}x{self.aux_min_size} the auxiliary head needs "
                    f"(input about {self.spec.input_size} px); aux logits are None",
                    stacklevel=3,
                )
        h = self.block4(h)
        if self.top is not None:
            h = self.top(h)
        return h, aux_logits

    def forward_features(self, x: Tensor) -> Tensor:
        """The feature map fed to the head (after block4, and the new top if any)."""
        return self._body(x, want_aux=False)[0]

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, num_outputs) for images (B, 3, H, W) in [0, 1]."""
        return self.head(self._body(x, want_aux=False)[0])

    def forward_train(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(logits, aux_logits); aux logits only for a model with an auxiliary head in train mode."""
        h, aux_logits = self._body(x, want_aux=self.training)
        return self.head(h), aux_logits

    # -- named parts -------------------------------------------------------------------
    def analysis_modules(self) -> dict[str, nn.Module]:
        """Analysis layer name -> module whose forward output is that layer's activation."""
        return {layer: getattr(self, _ANALYSIS_TO_STAGE[layer]) for layer in self.spec.analysis_layers}

    def _named_params(self, names: Sequence[str]) -> list[nn.Parameter]:
        seen: set[int] = set()
        out: list[nn.Parameter] = []
        for name in names:
            for p in self.get_submodule(name).parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of the newly created classification layer(s) (incl. the aux head's)."""
        return self._named_params(self.head_names)

    def top_parameters(self) -> list[nn.Parameter]:
        """New top blocks (patch_cnn, hybrid) plus the new head: what phase-1 training updates."""
        return self._named_params(tuple(self.new_top_names) + tuple(self.head_names))

    def body_parameters(self) -> list[nn.Parameter]:
        """Every parameter not in :meth:`top_parameters`."""
        top = {id(p) for p in self.top_parameters()}
        return [p for p in self.parameters() if id(p) not in top]

    def iter_parts(self) -> Iterator[tuple[str, nn.Module]]:
        """(name, module) for stem, block1..block4, top, head, aux (those present)."""
        for name in (*STAGES, "top", "head", "aux"):
            module = getattr(self, name)
            if module is not None:
                yield name, module

    def torchvision_key(self, key: str) -> str | None:
        """The torchvision state-dict key of one of our state-dict keys, or None for parts
        that have no torchvision counterpart (new top blocks, hybrid stages)."""
        part, _, rest = key.partition(".")
        if part not in self.tv_prefix:
            return None
        return self.tv_prefix[part] + rest

    def extra_repr(self) -> str:
        return f"name={self.spec.name!r}, init={self.init!r}, transfer={self.transfer!r}"
