"""The paper's representational analysis (section 3.3, Figure 1) as a library step.

For one target dataset and seed, the seeded stratified split gives a 20 % fine-tuning pool
and an 80 % test set (:func:`tlcore.data.splits.make_target_split`). Three networks of the
same architecture are then fed the *same* test images:

* **A**: the DDSM-pretrained model as it is;
* **B**: the network the fine-tuning cell (DDSM init, 20 %, transfer ``all``, same seed)
  trained and scored, loaded from that run's weights (the analysis trains nothing itself);
* **R**: a randomly initialised network (seeded), the baseline that gives the scale a
  meaning.

Per analysis layer (``conv1``, ``block1``..``block4``) the activations are streamed with
forward hooks (:mod:`tlcore.similarity.activations`): in ``"positions"`` mode every spatial
position of a conv map is a datapoint, subsampled to at most ``max_positions`` rows with the
same positions in every network; ``"pool"`` averages each map over space. The table then
holds, per layer and measure, the similarity of A and B (``value``) and of A and R
(``baseline``).

SVCCA keeps the top singular directions explaining ``keep`` (0.99) of the variance. When
that leaves fewer than ``min_samples_per_dim`` datapoints per kept direction (small data,
wide late layers), each side is capped at ``(n - 1) // (2 * min_samples_per_dim)``
directions and the row's ``note`` says so: CCA with nearly as many directions as datapoints
reports correlations near 1 by construction. A measure that cannot be computed for a layer
(PWCCA on an underdetermined layer) is NaN with the reason in ``note``.

Nothing here knows MLflow; ``pipelines/cca.py`` records the result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from tlcore.data.records import Skipped
from tlcore.data.splits import SplitConfig, make_target_split
from tlcore.design import PAPER_DESIGN
from tlcore.experiment import FinetuneConfig, StepConfig, prepare_data
from tlcore.params import Opt, dataset_choices
from tlcore.models import create_model
from tlcore.similarity import (
    ActivationSampler,
    PairedActivationSampler,
    UnderdeterminedError,
    linear_cka,
    pwcca,
    svcca_details,
)
from tlcore.training.engine import model_batch, resolve_device

# Measures the analysis offers (names as in tlcore.similarity.layerwise); SVCCA is always computed.
CCA_MEASURES: tuple[str, ...] = ("svcca", "pwcca", "cka", "cka_debiased")
MODES: tuple[str, ...] = ("positions", "pool")
TABLE_COLUMNS: tuple[str, ...] = (
    "layer", "measure", "value", "baseline", "n_samples", "channels", "dims_a", "dims_b", "note",
)


@dataclass(frozen=True)
class CcaConfig(StepConfig):
    """Settings of the CCA analysis of one target dataset (plus the training settings of B).

    ``measures``: SVCCA is always first; add ``pwcca``, ``cka`` or ``cka_debiased``.
    ``keep``: SVCCA variance share (float in (0, 1]) or number of directions (int).
    ``max_positions``: per-layer budget of datapoints in ``"positions"`` mode (None: all).
    ``ft_fraction``: which nested fine-tuning portion trains B (0.2 = the whole pool, as
    in the paper). ``min_samples_per_dim``: SVCCA guard, see the module docstring.
    """

    dataset: str = "mias"
    keep: float | int = 0.99
    measures: tuple[str, ...] = ("svcca",)
    max_positions: int | None = 10_000
    mode: str = "positions"
    ft_fraction: float = 0.2
    min_samples_per_dim: float = 2.0

    OPTIONS: ClassVar[dict[str, Opt]] = {
        "dataset": Opt("Target dataset (from the reader registry); several comma-separated: one run each.",
                       choices=dataset_choices),
        "keep": Opt("SVCCA: share of the variance the kept singular directions explain."),
        "measures": Opt("Comma-separated similarity measures: svcca (always computed), pwcca, cka, cka_debiased."),
        "max_positions": Opt("Datapoints kept per layer in positions mode (0 = all: memory grows with the data).",
                             zero_is_none=True),
        "mode": Opt("positions: every conv position is a datapoint (subsampled); pool: average over space.",
                    choices=MODES),
        "ft_fraction": Opt("Fine-tuning portion that trains the compared model (0.2 = the whole pool).", cli=False),
        "min_samples_per_dim": Opt("SVCCA guard: datapoints needed per kept direction.", cli=False),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        measures = tuple(dict.fromkeys(("svcca", *(str(m).strip().lower() for m in self.measures if str(m).strip()))))
        unknown = [m for m in measures if m not in CCA_MEASURES]
        if unknown:
            raise ValueError(f"CcaConfig.measures: unknown {unknown}; valid: {', '.join(CCA_MEASURES)}")
        object.__setattr__(self, "measures", measures)
        if self.mode not in MODES:
            raise ValueError(f"CcaConfig.mode must be one of {MODES}, got {self.mode!r}")
        if isinstance(self.keep, bool) or not (
            (isinstance(self.keep, int) and self.keep >= 1) or (isinstance(self.keep, float) and 0.0 < self.keep <= 1.0)
        ):
            raise ValueError(f"CcaConfig.keep must be a variance share in (0, 1] or a count >= 1, got {self.keep!r}")
        if self.max_positions is not None and self.max_positions < 2:
            raise ValueError(f"CcaConfig.max_positions must be >= 2 or None, got {self.max_positions!r}")
        if self.ft_fraction not in (0.1, 0.2):
            raise ValueError(f"CcaConfig.ft_fraction must be 0.1 or 0.2, got {self.ft_fraction!r}")
        if not self.min_samples_per_dim >= 1.0:
            raise ValueError(f"CcaConfig.min_samples_per_dim must be >= 1, got {self.min_samples_per_dim!r}")

    def source_finetune_config(self) -> FinetuneConfig:
        """The fine-tuning cell whose trained network is B: DDSM init, ``ft_fraction``, transfer ``all``.

        Every training setting is this config's own, so its config hash identifies the run
        that trained (and scored) B.
        """
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(StepConfig)}
        return FinetuneConfig(**shared, dataset=self.dataset, init=PAPER_DESIGN.cca_init,
                              ft_fraction=self.ft_fraction, transfer="all")


@dataclass
class CcaResult:
    """What :func:`run_cca` produced, ready to be recorded.

    ``table`` has the columns :data:`TABLE_COLUMNS` (one row per layer and measure);
    ``manifest`` the split manifest (anonymous ids).
    """

    config: CcaConfig
    table: pd.DataFrame
    split_hash: str
    dataset_fingerprint: str
    manifest: list[dict[str, str]]
    skipped: list[Skipped] = field(default_factory=list)
    n_test_images: int = 0
    n_finetune_train: int = 0
    n_finetune_val: int = 0

    def metrics(self) -> dict[str, float]:
        """``<measure>_<layer>`` and ``<measure>_baseline_<layer>`` (SVCCA is named ``cca``); NaNs left out."""
        return similarity_metrics(self.table)

    def figure_table(self) -> pd.DataFrame:
        """``dataset, layer, similarity, baseline`` of SVCCA: the input of Figure 1."""
        sv = self.table[self.table["measure"] == "svcca"]
        return pd.DataFrame({
            "dataset": self.config.dataset,
            "layer": sv["layer"].to_numpy(),
            "similarity": sv["value"].to_numpy(dtype=float),
            "baseline": sv["baseline"].to_numpy(dtype=float),
        })


def metric_prefix(measure: str) -> str:
    """Metric name prefix of a measure: SVCCA is the study's ``cca``; others keep their name."""
    return "cca" if measure == "svcca" else measure


def similarity_metrics(table: pd.DataFrame) -> dict[str, float]:
    """Finite values of a :func:`run_cca` table as ``<prefix>_<layer>`` / ``<prefix>_baseline_<layer>``."""
    out: dict[str, float] = {}
    for row in table.itertuples(index=False):
        prefix = metric_prefix(str(row.measure))
        for key, value in ((f"{prefix}_{row.layer}", row.value), (f"{prefix}_baseline_{row.layer}", row.baseline)):
            if value is not None and math.isfinite(float(value)):
                out[key] = float(value)
    return out


# ----------------------------------------------------------------------------- activations


def _loader(dataset: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def collect_activations(
    models: Mapping[str, nn.Module],
    dataset: Dataset,
    *,
    mode: str = "positions",
    max_positions: int | None = 10_000,
    seed: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """Paired activations of several same-architecture models over ``dataset``.

    ``models`` maps a condition name to a model with ``analysis_modules()`` (at least two);
    ``dataset`` yields ``(image, label)`` (uint8 or float images). Returns condition ->
    layer -> ``(n_samples, channels)`` float32; row ``i`` of a layer is the same image and
    spatial position in every condition (checked). Memory stays bounded by
    ``max_positions`` per layer and model (``"positions"`` mode). The models are moved to
    ``device`` and run in eval mode (their training mode is restored).
    """
    names = list(models)
    if len(names) < 2:
        raise ValueError(f"collect_activations needs at least two models to pair, got {names}")
    dev = resolve_device(device)
    modules = {name: _analysis_modules(name, m) for name, m in models.items()}
    for m in models.values():
        m.to(dev)
    kwargs: dict[str, Any] = {"mode": mode, "max_positions": max_positions, "seed": seed, "device": dev}
    pair = PairedActivationSampler(models[names[0]], models[names[1]], modules[names[0]], modules[names[1]], **kwargs)
    extra = {name: ActivationSampler(models[name], modules[name], **kwargs) for name in names[2:]}
    batches = tqdm(_loader(dataset, batch_size, num_workers), desc="activations", disable=not progress,
                   leave=False, unit="batch")
    for x, _y in batches:
        xb = model_batch(x, dev)
        pair.update(xb)
        for sampler in extra.values():
            sampler.update(xb)
    acts_a, acts_b = pair.result()
    out = {names[0]: acts_a, names[1]: acts_b}
    reference = pair.a.kept_indices()
    for name, sampler in extra.items():
        kept = sampler.kept_indices()
        for layer, idx in reference.items():
            if not np.array_equal(idx, kept[layer]):
                raise RuntimeError(f"layer {layer!r}: model {name!r} kept other positions than {names[0]!r}")
        out[name] = sampler.result()
    return out


def _analysis_modules(name: str, model: nn.Module) -> dict[str, nn.Module]:
    getter = getattr(model, "analysis_modules", None)
    if not callable(getter):
        raise TypeError(f"model {name!r} ({type(model).__name__}) has no analysis_modules(); use a TransferModel")
    return getter()


# ----------------------------------------------------------------------------- similarity


@dataclass(frozen=True)
class _Value:
    value: float
    dims_a: float = math.nan
    dims_b: float = math.nan
    note: str = ""


def _svcca(a: np.ndarray, b: np.ndarray, keep: float | int, min_samples_per_dim: float) -> _Value:
    n = a.shape[0]
    cap = int((n - 1) // (2 * min_samples_per_dim))
    try:
        res = svcca_details(a, b, keep)
        if n >= min_samples_per_dim * (res.dims_x + res.dims_y):
            return _Value(res.mean, res.dims_x, res.dims_y)
        why = f"{res.dims_x}+{res.dims_y} directions for {keep} of the variance"
    except UnderdeterminedError:
        why = f"{keep} of the variance needs more directions than the {n} samples support"
    if cap < 1:
        return _Value(math.nan, note=f"svcca: {n} samples are too few for any direction")
    capped_keep = min(int(keep), cap) if isinstance(keep, int) else cap
    res = svcca_details(a, b, capped_keep)
    note = f"svcca: {why}; capped at {capped_keep} directions per side ({n} samples)"
    return _Value(res.mean, res.dims_x, res.dims_y, note)


def _measure(measure: str, a: np.ndarray, b: np.ndarray, keep: float | int, min_samples_per_dim: float) -> _Value:
    try:
        if measure == "svcca":
            return _svcca(a, b, keep, min_samples_per_dim)
        if measure == "pwcca":
            return _Value(pwcca(a, b))
        if measure == "cka":
            return _Value(linear_cka(a, b))
        if measure == "cka_debiased":
            return _Value(linear_cka(a, b, debiased=True))
    except ValueError as exc:  # underdetermined or no variance: record why, do not guess
        return _Value(math.nan, note=f"{measure}: {exc}")
    raise ValueError(f"unknown measure {measure!r}; valid: {', '.join(CCA_MEASURES)}")


def compare_layers(
    acts_a: Mapping[str, np.ndarray],
    acts_b: Mapping[str, np.ndarray],
    *,
    measures: Sequence[str] = ("svcca",),
    keep: float | int = 0.99,
    min_samples_per_dim: float = 2.0,
) -> pd.DataFrame:
    """Per layer and measure, the similarity of two paired activation sets.

    Returns ``DataFrame(layer, measure, value, n_samples, channels, dims_a, dims_b, note)``
    in ``acts_a``'s layer order; ``dims_*`` are SVCCA's kept directions (NaN for other
    measures). See the module docstring for the SVCCA cap and NaN values.
    """
    for m in measures:
        if m not in CCA_MEASURES:
            raise ValueError(f"unknown measure {m!r}; valid: {', '.join(CCA_MEASURES)}")
    if list(acts_a) != list(acts_b):
        raise ValueError(f"acts_a and acts_b name different layers: {list(acts_a)} vs {list(acts_b)}")
    rows = []
    for layer, a in acts_a.items():
        b = acts_b[layer]
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"layer {layer!r}: {a.shape[0]} samples in A but {b.shape[0]} in B; they must be paired")
        for m in measures:
            v = _measure(m, a, b, keep, min_samples_per_dim)
            rows.append({"layer": layer, "measure": m, "value": v.value, "n_samples": int(a.shape[0]),
                         "channels": int(a.shape[1]), "dims_a": v.dims_a, "dims_b": v.dims_b, "note": v.note})
    return pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if c != "baseline"])


def _with_baseline(main: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    table = main.copy()
    table.insert(3, "baseline", base["value"].to_numpy(dtype=float))
    notes = []
    for own, other in zip(main["note"], base["note"], strict=True):
        parts = [own] if own else []
        if other:
            parts.append(f"baseline {other}")
        notes.append("; ".join(parts))
    table["note"] = notes
    return table[list(TABLE_COLUMNS)]


# ----------------------------------------------------------------------------- the step



def run_cca(
    config: CcaConfig,
    ddsm_state: str | Path | Mapping[str, torch.Tensor],
    finetuned_state: str | Path | Mapping[str, torch.Tensor],
    *,
    progress: bool = True,
) -> CcaResult:
    """Representational similarity of the DDSM model before (A) and after (B) fine-tuning.

    ``ddsm_state``: the DDSM-pretrained weights of ``config.model``; ``finetuned_state``:
    the weights of the network that the fine-tuning cell (``init="ddsm"``,
    ``config.ft_fraction``, transfer ``all``, same seed) trained and scored -- the analysis
    never trains a network of its own, so Figure 1 shows the network Table 1-3 scored.
    Both are tensors-only files or state dicts. The returned table compares A with B
    (``value``) and A with a seeded random network (``baseline``) over the test images
    of the seed's split, per analysis layer and measure.
    """
    if ddsm_state is None or finetuned_state is None:
        raise ValueError("run_cca needs the DDSM-pretrained and the fine-tuned states; one was not given")
    data = prepare_data(config.dataset, config, progress=progress)
    split = make_target_split(data.records, SplitConfig(seed=config.seed))
    portion = split.finetune(config.ft_fraction)

    model_a = create_model(config.model, init="ddsm", ddsm_state=ddsm_state)
    model_b = create_model(config.model, init="ddsm", ddsm_state=finetuned_state)
    model_r = create_model(config.model, init="random", seed=config.seed)

    acts = collect_activations(
        {"ddsm": model_a, "finetuned": model_b, "random": model_r},
        data.subset(split.test),
        mode=config.mode,
        max_positions=config.max_positions,
        seed=config.seed,
        batch_size=max(config.batch_size, 32),
        device=config.device,
        num_workers=config.num_workers,
        progress=progress,
    )
    kwargs = dict(measures=config.measures, keep=config.keep, min_samples_per_dim=config.min_samples_per_dim)
    main = compare_layers(acts["ddsm"], acts["finetuned"], **kwargs)
    base = compare_layers(acts["ddsm"], acts["random"], **kwargs)
    return CcaResult(
        config=config,
        table=_with_baseline(main, base),
        split_hash=split.split_hash,
        dataset_fingerprint=data.fingerprint,
        manifest=split.manifest(),
        skipped=data.skipped,
        n_test_images=len(split.test),
        n_finetune_train=len(portion.train),
        n_finetune_val=len(portion.val),
    )
