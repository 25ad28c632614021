"""Collect layer activations with forward hooks, streaming, with bounded memory.

A layer's output of shape ``(B, C, *spatial)`` (e.g. a conv map ``(B, C, H, W)``) becomes
rows of a ``(n_samples, C)`` matrix in one of two modes:

* ``"pool"``: average over the spatial positions, one row per image (``N x C`` in all).
* ``"positions"``: every spatial position of every image is a datapoint (``N*H*W`` rows
  in principle), uniformly subsampled to at most ``max_positions`` rows per layer.
  Outputs of shape ``(B, C)`` have one position per image, so both modes agree there.

Subsampling strategy (positions mode): a *random-key reservoir*. Each incoming position
gets an independent uniform key; the layer keeps the ``max_positions`` positions with the
smallest keys seen so far (``torch.topk`` over the kept keys plus the new batch's keys).
This is an exact uniform sample without replacement from the whole stream, vectorised per
batch; which positions are kept depends only on ``seed``, the layer name and the sequence
of batch shapes, never on the activation values. Rows come back in stream order (image,
then position ``h*W + w``).

Because of that, two models with the same architecture fed the same batches select
the *same* positions. :class:`PairedActivationSampler` relies on this (and checks it), so
CCA compares the same datapoints under both conditions.

Memory bound, per layer: the kept rows ``max_positions x C x 4`` bytes (float32, on the
CPU) plus ``max_positions x 16`` bytes of keys and indices, and transiently one batch's
``B x H x W x 16`` bytes of keys and indices. Each hooked output is reduced inside its
hook, so no batch output is held beyond the forward pass and nothing grows with ``N``
(pool mode keeps ``N x C`` floats, one row per image). With ``early_stop`` the forward
pass is cut as soon as every hooked module has run, except on the first batch, which runs
in full to check that no hooked module is called twice per pass (a reused module, such as
the shared ReLU inside a torchvision Bottleneck, would otherwise be captured silently at
its first use only).

Models are run in ``eval()`` mode under ``torch.no_grad()``; their previous training mode
is restored afterwards.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

Mode = Literal["positions", "pool"]
DEFAULT_MAX_POSITIONS = 10_000


class _StopForward(Exception):
    """Raised from a hook to cut the forward pass once every hooked module has run."""


def _layer_generator(seed: int, name: str) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**63 - 1))
    return g


def _flat(name: str, out: Any) -> torch.Tensor:
    """(B, C, P) view of a layer output; P = 1 for (B, C) outputs."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"layer {name!r}: hooked module returned {type(out).__name__}, expected a Tensor")
    if out.ndim < 2:
        raise ValueError(f"layer {name!r}: output shape {tuple(out.shape)} has no channel dimension")
    if out.ndim == 2:
        return out[:, :, None]
    return out.flatten(2)


class _LayerStore:
    """Rows kept for one layer of one model."""

    def __init__(self, name: str, mode: Mode, budget: int | None, seed: int):
        self.name = name
        self.mode = mode
        self.budget = budget
        self.gen = _layer_generator(seed, name)
        self.keys = torch.empty(0, dtype=torch.float64)
        self.index = torch.empty(0, dtype=torch.int64)
        self.rows: torch.Tensor | None = None
        self.pooled: list[torch.Tensor] = []
        self.seen = 0  # positions (or images, pool mode) offered so far
        self.shape: tuple[int, ...] | None = None  # (C, *spatial) of the first batch

    def offer(self, out: torch.Tensor) -> None:
        flat = _flat(self.name, out)
        b, _, p = flat.shape
        shape = tuple(out.shape[1:])
        if self.shape is None:
            self.shape = shape
        elif shape[0] != self.shape[0]:
            raise ValueError(f"layer {self.name!r}: channel count changed from {self.shape[0]} to {shape[0]}")
        if self.mode == "pool":
            self.pooled.append(flat.float().mean(dim=2).cpu())
            self.seen += b
            return
        m = b * p
        new_keys = torch.rand(m, generator=self.gen, dtype=torch.float64)
        new_index = torch.arange(self.seen, self.seen + m, dtype=torch.int64)
        self.seen += m
        n_old = self.keys.numel()
        if self.budget is None or n_old + m <= self.budget:
            old_sel = torch.arange(n_old)
            new_sel = torch.arange(m)
            keys = torch.cat([self.keys, new_keys])
        else:
            all_keys = torch.cat([self.keys, new_keys])
            top = torch.topk(all_keys, self.budget, largest=False, sorted=False).indices
            old_sel = top[top < n_old]
            new_sel = top[top >= n_old] - n_old
            keys = torch.cat([self.keys[old_sel], new_keys[new_sel]])
        dev = flat.device
        bi, pi = (new_sel // p).to(dev), (new_sel % p).to(dev)
        new_rows = flat[bi, :, pi].float().cpu()  # (k, C)
        old_rows = self.rows[old_sel] if self.rows is not None else new_rows[:0]
        self.rows = torch.cat([old_rows, new_rows])
        self.keys = keys
        self.index = torch.cat([self.index[old_sel], new_index[new_sel]])

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows (n, C) float32 in stream order, global position indices (n,))."""
        if self.mode == "pool":
            if not self.pooled:
                raise ValueError(f"layer {self.name!r}: no batches were seen")
            rows = torch.cat(self.pooled)
            return rows.numpy(), np.arange(rows.shape[0], dtype=np.int64)
        if self.rows is None:
            raise ValueError(f"layer {self.name!r}: no batches were seen")
        order = torch.argsort(self.index)
        return self.rows[order].numpy(), self.index[order].numpy()


def _batch_tensor(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise TypeError(
        f"a batch must be a Tensor or a (Tensor, ...) tuple/list, got {type(batch).__name__}"
    )


class ActivationSampler:
    """Streams batches through ``model`` and keeps subsampled activations per layer.

    ``modules`` maps a layer name to a submodule of ``model``. See the module docstring
    for the modes, the subsampling and the memory bound. ``device`` is where batches are
    sent (default: the device of the model's first parameter); the model is not moved.
    """

    def __init__(
        self,
        model: nn.Module,
        modules: Mapping[str, nn.Module],
        *,
        mode: Mode = "positions",
        max_positions: int | None = DEFAULT_MAX_POSITIONS,
        seed: int = 0,
        device: torch.device | str | None = None,
        early_stop: bool = True,
    ):
        if mode not in ("positions", "pool"):
            raise ValueError(f"mode must be 'positions' or 'pool', got {mode!r}")
        if max_positions is not None and max_positions < 1:
            raise ValueError(f"max_positions must be >= 1 or None, got {max_positions}")
        if not modules:
            raise ValueError("modules is empty: name at least one layer to hook")
        owned = {id(m) for m in model.modules()}
        for name, mod in modules.items():
            if id(mod) not in owned:
                raise ValueError(f"layer {name!r}: module is not part of the model")
        self.model = model
        self.modules = dict(modules)
        self.mode: Mode = mode
        self.early_stop = early_stop
        if device is None:
            first = next(model.parameters(), None)
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.stores = {name: _LayerStore(name, mode, max_positions, seed) for name in self.modules}
        self.n_images = 0
        self._fired: set[str] = set()
        self._checked_reuse = False  # first batch runs the whole forward pass

    def _hook(self, name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if name in self._fired:
                raise RuntimeError(
                    f"layer {name!r}: module ran more than once in one forward pass (it is "
                    f"reused inside the model); hook a module that runs once"
                )
            self._fired.add(name)
            self.stores[name].offer(output)
            if self.early_stop and self._checked_reuse and len(self._fired) == len(self.stores):
                raise _StopForward

        return hook

    @torch.no_grad()
    def update(self, batch: Any) -> None:
        """Run one batch through the model and fold its activations into the sample."""
        x = _batch_tensor(batch).to(self.device)
        handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        was_training = self.model.training
        self._fired = set()
        try:
            self.model.eval()
            try:
                self.model(x)
            except _StopForward:
                pass
        finally:
            self.model.train(was_training)
            for h in handles:
                h.remove()
        missing = [n for n in self.modules if n not in self._fired]
        if missing:
            raise RuntimeError(f"layers {missing} did not run in the forward pass")
        self._checked_reuse = True
        self.n_images += int(x.shape[0])

    def run(self, batches: Iterable[Any]) -> dict[str, np.ndarray]:
        """Feed every batch, then return :meth:`result`."""
        for batch in batches:
            self.update(batch)
        return self.result()

    def result(self) -> dict[str, np.ndarray]:
        """Layer name -> ``(n_samples, channels)`` float32 array."""
        return {name: store.result()[0] for name, store in self.stores.items()}

    def kept_indices(self) -> dict[str, np.ndarray]:
        """Layer name -> global position index of each row (``image * positions + p``)."""
        return {name: store.result()[1] for name, store in self.stores.items()}


def stream_activations(
    model: nn.Module,
    modules: Mapping[str, nn.Module],
    batches: Iterable[Any],
    *,
    mode: Mode = "positions",
    max_positions: int | None = DEFAULT_MAX_POSITIONS,
    seed: int = 0,
    device: torch.device | str | None = None,
    early_stop: bool = True,
) -> dict[str, np.ndarray]:
    """Activations of the named ``modules`` over all ``batches``: name -> (n_samples, C).

    ``mode="pool"`` averages conv maps over space (one row per image);
    ``mode="positions"`` keeps a seeded uniform sample of at most ``max_positions``
    spatial positions per layer (``None``: all of them -- unbounded). Batches are Tensors
    or ``(Tensor, ...)`` tuples.
    """
    sampler = ActivationSampler(
        model, modules, mode=mode, max_positions=max_positions, seed=seed, device=device,
        early_stop=early_stop,
    )
    return sampler.run(batches)


class PairedActivationSampler:
    """Two models (conditions A and B) fed the same batches; the same positions kept in both.

    ``modules_a`` and ``modules_b`` must name the same layers. Row ``i`` of layer ``L`` in
    A and in B come from the same image and spatial position, which CCA requires.
    """

    def __init__(
        self,
        model_a: nn.Module,
        model_b: nn.Module,
        modules_a: Mapping[str, nn.Module],
        modules_b: Mapping[str, nn.Module],
        *,
        mode: Mode = "positions",
        max_positions: int | None = DEFAULT_MAX_POSITIONS,
        seed: int = 0,
        device: torch.device | str | None = None,
        early_stop: bool = True,
    ):
        if list(modules_a) != list(modules_b):
            raise ValueError(
                f"modules_a and modules_b must name the same layers in the same order: "
                f"{list(modules_a)} vs {list(modules_b)}"
            )
        kwargs: dict[str, Any] = {
            "mode": mode, "max_positions": max_positions, "seed": seed, "device": device,
            "early_stop": early_stop,
        }
        self.a = ActivationSampler(model_a, modules_a, **kwargs)
        self.b = ActivationSampler(model_b, modules_b, **kwargs)

    def update(self, batch: Any) -> None:
        """Feed one batch to both models."""
        self.a.update(batch)
        self.b.update(batch)
        for name in self.a.stores:
            sa, sb = self.a.stores[name], self.b.stores[name]
            if sa.seen != sb.seen or sa.shape != sb.shape:
                raise ValueError(
                    f"layer {name!r}: models disagree on the output shape ({sa.shape} in A, "
                    f"{sb.shape} in B); paired positions need identical spatial layouts"
                )

    def run(self, batches: Iterable[Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Feed every batch, then return :meth:`result`."""
        for batch in batches:
            self.update(batch)
        return self.result()

    def result(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(acts_a, acts_b)``: layer name -> (n_samples, C), rows paired."""
        acts_a, acts_b = {}, {}
        for name in self.a.stores:
            rows_a, idx_a = self.a.stores[name].result()
            rows_b, idx_b = self.b.stores[name].result()
            if not np.array_equal(idx_a, idx_b):
                raise RuntimeError(f"layer {name!r}: the two models kept different positions")
            acts_a[name], acts_b[name] = rows_a, rows_b
        return acts_a, acts_b
