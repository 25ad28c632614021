"""Figures of the study report: Figure 1 (per-layer CCA) and per-dataset ROC curves.

Plain matplotlib :class:`~matplotlib.figure.Figure` objects (no pyplot state, no GUI
backend), saved as PNG. The inputs are tables and prediction arrays; nothing here talks
to MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tlcore.metrics import roc_auc, roc_points

CCA_LAYERS: tuple[str, ...] = ("conv1", "block1", "block2", "block3", "block4")
INIT_COLORS: dict[str, str] = {"random": "#7f7f7f", "imagenet": "#1f77b4", "ddsm": "#d62728"}
FRACTION_STYLES: dict[str, str] = {"0.0": ":", "0.1": "--", "0.2": "-"}
_EXTRA_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff7f0e")


@dataclass(frozen=True)
class RocCurve:
    """One ROC curve to draw: the test predictions of one run.

    ``panel`` groups curves into subplots (the model), ``init`` picks the colour and
    ``ft_fraction`` the line style.
    """

    panel: str
    init: str
    ft_fraction: str
    labels: np.ndarray
    scores: np.ndarray
    seed: str = ""

    @property
    def auc(self) -> float:
        return roc_auc(self.labels, self.scores)


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=dpi, bbox_inches="tight")
    return path


def _color(key: str, palette: dict[str, str], order: list[str]) -> str:
    if key in palette:
        return palette[key]
    return _EXTRA_COLORS[order.index(key) % len(_EXTRA_COLORS)] if key in order else _EXTRA_COLORS[0]


def plot_cca(
    cca: pd.DataFrame,
    path: str | Path,
    *,
    layers: Sequence[str] = CCA_LAYERS,
    title: str = "ResNet-50 per-layer CCA similarity before vs after fine-tuning",
    dpi: int = 120,
) -> Path:
    """Figure 1: ``layer`` on x, ``similarity`` on y, one solid line per dataset and a dashed
    line in the same colour for its random-network ``baseline``.

    ``cca`` has columns ``dataset, layer, similarity, baseline`` (baseline may be NaN) and
    optionally ``rank_cap`` (non-empty where SVCCA's kept directions were capped by the
    datapoints): such points are drawn hollow and the caption says so. Writes a PNG to
    ``path`` and returns it. An empty table gives a figure that says so.
    """
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(layers))
    datasets = list(dict.fromkeys(cca["dataset"])) if len(cca) else []
    palette = {"inbreast": "#1f77b4", "mias": "#2ca02c", "ultrasound": "#d62728"}
    any_capped = False
    for name in datasets:
        sub = cca[cca["dataset"] == name].set_index("layer")
        color = _color(name, palette, datasets)
        sim = np.array([float(sub.at[l, "similarity"]) if l in sub.index else np.nan for l in layers])
        ax.plot(x, sim, marker="o", color=color, label=name)
        if "rank_cap" in sub.columns:
            capped = np.array([bool(sub.at[l, "rank_cap"]) if l in sub.index and isinstance(sub.at[l, "rank_cap"], str)
                               else False for l in layers])
            if capped.any():
                any_capped = True
                ax.plot(x[capped], sim[capped], linestyle="none", marker="o", markersize=9, markerfacecolor="white",
                        markeredgecolor=color)
        if "baseline" in sub.columns:
            base = np.array([float(sub.at[l, "baseline"]) if l in sub.index else np.nan for l in layers])
            if np.isfinite(base).any():
                ax.plot(x, base, linestyle="--", marker=".", color=color, alpha=0.7, label=f"{name} (random-net baseline)")
    if not datasets:
        ax.text(0.5, 0.5, "no CCA runs tracked", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(x)
    ax.set_xticklabels(list(layers))
    ax.set_xlabel("layer")
    ax.set_ylabel("mean CCA similarity")
    ax.set_ylim(0.0, 1.05)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=10)
    if any_capped:
        ax.text(0.01, 0.01, "hollow: SVCCA rank capped by the datapoints available (see rank_cap)",
                transform=ax.transAxes, fontsize=7, va="bottom")
    if datasets:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, Path(path), dpi)


def plot_roc(
    curves: Sequence[RocCurve],
    path: str | Path,
    *,
    title: str,
    panel_order: Sequence[str] = (),
    dpi: int = 110,
) -> Path:
    """ROC curves of one dataset: one subplot per ``panel`` (model), colour by init, line
    style by fine-tuning fraction, AUC in the legend. Writes a PNG and returns its path."""
    panels = [p for p in panel_order if any(c.panel == p for c in curves)]
    panels += [p for p in dict.fromkeys(c.panel for c in curves) if p not in panels]
    n = max(len(panels), 1)
    fig = Figure(figsize=(3.6 * n, 3.8))
    inits = list(dict.fromkeys(c.init for c in curves))
    for i, panel in enumerate(panels or [""]):
        ax = fig.add_subplot(1, n, i + 1)
        ax.plot([0, 1], [0, 1], color="#cccccc", linewidth=0.8)
        for curve in (c for c in curves if c.panel == panel):
            pts = roc_points(curve.labels, curve.scores)
            label = f"{curve.init} ft{curve.ft_fraction} (AUC {curve.auc:.3f})"
            ax.plot(
                pts["fpr"], pts["tpr"],
                color=_color(curve.init, INIT_COLORS, inits),
                linestyle=FRACTION_STYLES.get(curve.ft_fraction, "-."),
                linewidth=1.3, label=label,
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate")
        if i == 0:
            ax.set_ylabel("true positive rate")
        ax.set_title(panel or "no predictions", fontsize=10)
        if panel:
            ax.legend(fontsize=6, loc="lower right")
        else:
            ax.text(0.5, 0.5, "no prediction artifacts", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title, fontsize=11)
    return _save(fig, Path(path), dpi)
