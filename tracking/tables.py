"""Statistics tables of the study report, as pure functions of tracked runs and predictions.

* :func:`pretraining_table` -- each DDSM pre-training run's test AUC and CI, and whether the
  model learnt the source task at all (its CI excludes 0.5); transfer cells of a model that
  did not learn are not interpretable.
* :func:`delong_tables` -- DeLong tests of DDSM vs random initialisation: per model,
  fraction and seed on that seed's shared test set (``per_seed``), the seeds combined by
  inverse-variance weighting (``combined``), and per target and fraction the mean gap over
  models as one contrast of all their AUCs (``pooled``). Holm's adjustment runs over each
  family (the combined tests; the pooled tests).
* :func:`controls_table` -- the per-target summary the look-alike controls are judged by:
  pooled No-FT and FT 0.2 gaps with CIs and p-values, per-model gaps, the SVCCA block mean.

Everything takes DataFrames and returns DataFrames; nothing here reads the store. Which
cells are compared comes from the study design (:data:`tlcore.design.PAPER_DESIGN`), never
from a dataset's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tlcore.design import PAPER_DESIGN, fraction_key
from tlcore.metrics import combine_differences, delong_contrast, holm
from tracking.schema import STAGE_PRETRAIN, Metric, Param, Tag

DESIGN = PAPER_DESIGN
ALPHA = 0.05
NOT_LEARNT = "did not learn (DDSM test AUC CI covers 0.5): its transfer cells are not interpretable"
CCA_BLOCKS: tuple[str, ...] = tuple(layer for layer in DESIGN.cca_layers if layer.startswith("block"))

PRETRAINING_COLUMNS = ["model", "seed", "test_auc", "ci_low", "ci_high", "learnt", "note", "run_id"]
PER_SEED_COLUMNS = ["dataset", "model", "ft_fraction", "seed", "n_images", "auc_ddsm", "auc_random", "diff", "se",
                    "z", "p_value", "run_id_ddsm", "run_id_random", "note"]
COMBINED_COLUMNS = ["dataset", "model", "ft_fraction", "seeds", "n_seeds", "n_images", "auc_ddsm", "auc_random",
                    "diff", "se", "ci_low", "ci_high", "z", "p_value", "p_holm", "significant", "note"]
POOLED_COLUMNS = ["dataset", "ft_fraction", "models", "n_models", "seeds", "n_images", "auc_ddsm", "auc_random",
                  "diff", "se", "ci_low", "ci_high", "z", "p_value", "p_holm", "significant", "note"]

Predictions = Callable[[str, str], pd.DataFrame]


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series([np.nan] * len(frame), index=frame.index, dtype=object)


# ------------------------------------------------------------------------------ pre-training
def pretraining_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per FINISHED pre-training run (newest per model and seed): AUC, CI and ``learnt``.

    ``learnt`` is True when the bootstrap CI of the DDSM test AUC lies above 0.5; a model
    that did not learn the source task cannot show what pre-training on it transfers.
    """
    stage = _col(frame, f"tags.{Tag.STAGE}")
    runs = frame[(stage == STAGE_PRETRAIN) & (_col(frame, "status") == "FINISHED")]
    tidy = pd.DataFrame({
        "model": _col(runs, f"params.{Param.MODEL}"),
        "seed": _col(runs, f"params.{Param.SEED}").fillna("?").astype(str),
        "test_auc": pd.to_numeric(_col(runs, f"metrics.{Metric.TEST_AUC}"), errors="coerce"),
        "ci_low": pd.to_numeric(_col(runs, f"metrics.{Metric.TEST_AUC_CI_LOW}"), errors="coerce"),
        "ci_high": pd.to_numeric(_col(runs, f"metrics.{Metric.TEST_AUC_CI_HIGH}"), errors="coerce"),
        "run_id": _col(runs, "run_id"),
        "start_time": _col(runs, "start_time"),
    }).dropna(subset=["model", "test_auc"])
    tidy = tidy.sort_values("start_time", kind="stable").drop_duplicates(["model", "seed"], keep="last")
    known = tidy["ci_low"].notna()
    tidy["learnt"] = pd.array([bool(lo > 0.5) if ok else None for lo, ok in zip(tidy["ci_low"], known)],
                              dtype="boolean")
    tidy["note"] = [("" if flag else NOT_LEARNT) if ok else "no CI logged: cannot tell whether it learnt"
                    for flag, ok in zip(tidy["learnt"].fillna(False), known)]
    order = {m: i for i, m in enumerate(DESIGN.models)}
    tidy = tidy.sort_values(["model", "seed"], key=lambda s: s.map(order).fillna(99) if s.name == "model" else s)
    return tidy[PRETRAINING_COLUMNS].reset_index(drop=True)


def models_not_learnt(pretraining: pd.DataFrame) -> list[str]:
    """Models whose newest pre-training run did not learn the source task."""
    if pretraining.empty:
        return []
    return sorted(set(pretraining.loc[pretraining["learnt"].eq(False).fillna(False).astype(bool), "model"]))


# ------------------------------------------------------------------------------ DeLong
def _run_index(finished: pd.DataFrame) -> dict[tuple[str, ...], tuple[str, str]]:
    """(dataset, model, init, transfer, ft, seed) -> (run_id, artifact_uri) of the FINISHED runs."""
    cols = ["dataset", "model", "init", "transfer", "ft_fraction", "seed", "run_id", "artifact_uri"]
    return {tuple(r[:6]): (r[6], r[7]) for r in finished[cols].itertuples(index=False, name=None)}


def _joined(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str]) -> pd.DataFrame:
    joined = a.merge(b, on="image_id", suffixes=(f"_{names[0]}", f"_{names[1]}"), validate="one_to_one")
    if len(joined) == 0:
        raise ValueError("the runs share no test image_id")
    if (joined[f"label_{names[0]}"] != joined[f"label_{names[1]}"]).any():
        raise ValueError("the runs disagree on labels of the same image_id")
    return joined


def _seed_order(seed: str) -> tuple[int, float, str]:
    try:
        return (0, float(seed), seed)
    except ValueError:
        return (1, 0.0, seed)


def _with_holm(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """The table of ``records`` with Holm-adjusted p-values over its family and the survivors marked."""
    table = pd.DataFrame(records, columns=[c for c in columns if c not in ("p_holm", "significant")])
    table["p_holm"] = holm(table["p_value"].tolist()) if len(table) else []
    table["significant"] = pd.array([None if math.isnan(p) else bool(p < ALPHA) for p in table["p_holm"]],
                                    dtype="boolean")
    return table[columns]


def delong_tables(finished: pd.DataFrame, predictions: Predictions) -> dict[str, pd.DataFrame]:
    """``per_seed``, ``combined`` and ``pooled`` DeLong tables of DDSM vs random initialisation.

    ``finished`` holds the FINISHED fine-tune runs (one per cell and seed, columns of
    :func:`tracking.report.finetune_runs`); ``predictions(run_id, artifact_uri)`` returns a
    run's ``image_id, label, score`` table (raising ``ValueError`` when it cannot).
    ``significant`` means Holm-adjusted p < 0.05 within the table's family.
    """
    index = _run_index(finished)
    seeds_of: dict[tuple[str, ...], set[str]] = {}
    for key in index:
        seeds_of.setdefault(key[:5], set()).add(key[5])
    datasets = [d for d in DESIGN.target_datasets if d in set(finished["dataset"])]
    per_seed: list[dict[str, Any]] = []
    combined: list[dict[str, Any]] = []
    pooled: list[dict[str, Any]] = []
    scored: dict[tuple[str, str, str, str], pd.DataFrame] = {}  # (dataset, model, ft, seed) -> joined predictions

    for dataset in datasets:
        for ddsm, rand in DESIGN.comparison_pairs(dataset):
            kd, kr = ddsm.key, rand.key
            seeds = sorted(seeds_of.get(kd, set()) & seeds_of.get(kr, set()), key=_seed_order)
            if not seeds:
                continue
            rows = []
            for seed in seeds:
                rec: dict[str, Any] = {"dataset": dataset, "model": ddsm.model, "ft_fraction": kd[4], "seed": seed,
                                       "n_images": 0, "auc_ddsm": math.nan, "auc_random": math.nan,
                                       "diff": math.nan, "se": math.nan, "z": math.nan, "p_value": math.nan,
                                       "run_id_ddsm": index[(*kd, seed)][0], "run_id_random": index[(*kr, seed)][0],
                                       "note": ""}
                try:
                    a, b = predictions(*index[(*kd, seed)]), predictions(*index[(*kr, seed)])
                    joined = _joined(a, b, ("ddsm", "random"))
                    res = delong_contrast(joined["label_ddsm"].to_numpy(),
                                          np.vstack([joined["score_ddsm"], joined["score_random"]]), (1.0, -1.0))
                    rec.update(n_images=len(joined), auc_ddsm=res.auc_a, auc_random=res.auc_b, diff=res.diff,
                               se=res.se, z=res.z, p_value=res.p_value)
                    if len(joined) < max(len(a), len(b)):
                        rec["note"] = f"joined on {len(joined)} of {len(a)}/{len(b)} image ids"
                    scored[(dataset, ddsm.model, kd[4], seed)] = joined
                except ValueError as exc:
                    rec["note"] = str(exc)[:300]
                rows.append(rec)
            per_seed.extend(rows)
            combined.append(_combine(rows, dataset, ddsm.model, kd[4]))

    for dataset in datasets:
        for ft in DESIGN.ft_fractions:
            rec = _pooled(scored, dataset, fraction_key(ft))
            if rec is not None:
                pooled.append(rec)

    return {
        "per_seed": pd.DataFrame(per_seed, columns=PER_SEED_COLUMNS),
        "combined": _with_holm(combined, COMBINED_COLUMNS),
        "pooled": _with_holm(pooled, POOLED_COLUMNS),
    }


def _combine(rows: Sequence[dict[str, Any]], dataset: str, model: str, ft: str) -> dict[str, Any]:
    tested = [r for r in rows if not math.isnan(r["p_value"])]
    rec: dict[str, Any] = {"dataset": dataset, "model": model, "ft_fraction": ft,
                           "seeds": ",".join(r["seed"] for r in tested), "n_seeds": len(tested),
                           "n_images": int(np.mean([r["n_images"] for r in tested])) if tested else 0,
                           "auc_ddsm": math.nan, "auc_random": math.nan, "diff": math.nan, "se": math.nan,
                           "ci_low": math.nan, "ci_high": math.nan, "z": math.nan, "p_value": math.nan,
                           "note": "; ".join(f"seed {r['seed']}: {r['note']}" for r in rows if r["note"])}
    if tested:
        comb = combine_differences([r["diff"] for r in tested], [r["se"] for r in tested])
        rec.update(auc_ddsm=float(np.mean([r["auc_ddsm"] for r in tested])),
                   auc_random=float(np.mean([r["auc_random"] for r in tested])),
                   diff=comb.diff, se=comb.se, ci_low=comb.ci_low, ci_high=comb.ci_high, z=comb.z,
                   p_value=comb.p_value)
    elif not rec["note"]:
        rec["note"] = "no seed has predictions for both runs"
    return rec


def _pooled(scored: dict[tuple[str, str, str, str], pd.DataFrame], dataset: str, ft: str) -> dict[str, Any] | None:
    """Mean DDSM - random gap over the models, as one DeLong contrast per seed, seeds combined.

    Uses the seeds in which every model with a comparison at (dataset, ft) was scored, so
    each seed estimates the same quantity (the mean over the same models).
    """
    entries = {(m, s): j for (d, m, f, s), j in scored.items() if d == dataset and f == ft}
    if not entries:
        return None
    models = [m for m in DESIGN.models if any(k[0] == m for k in entries)]
    seeds = sorted({s for _, s in entries}, key=_seed_order)
    full = [s for s in seeds if all((m, s) in entries for m in models)]
    if not full:
        return None
    weights = [w for _ in models for w in (1.0 / len(models), -1.0 / len(models))]
    diffs, ses, sizes, auc_d, auc_r, notes = [], [], [], [], [], []
    for seed in full:
        table = None
        for m in models:
            part = entries[(m, seed)][["image_id", "label_ddsm", "score_ddsm", "score_random"]].rename(
                columns={"label_ddsm": f"label_{m}", "score_ddsm": f"ddsm_{m}", "score_random": f"random_{m}"})
            table = part if table is None else table.merge(part, on="image_id", validate="one_to_one")
        labels = table[f"label_{models[0]}"].to_numpy()
        if any((table[f"label_{m}"].to_numpy() != labels).any() for m in models):
            notes.append(f"seed {seed}: labels differ between models")
            continue
        matrix = np.vstack([table[f"{init}_{m}"].to_numpy() for m in models for init in ("ddsm", "random")])
        res = delong_contrast(labels, matrix, weights)
        diffs.append(res.diff)
        ses.append(res.se)
        sizes.append(len(table))
        auc_d.append(res.auc_a)
        auc_r.append(res.auc_b)
    rec: dict[str, Any] = {"dataset": dataset, "ft_fraction": ft, "models": ",".join(models), "n_models": len(models),
                           "seeds": ",".join(full), "n_images": int(np.mean(sizes)) if sizes else 0,
                           "auc_ddsm": math.nan, "auc_random": math.nan, "diff": math.nan, "se": math.nan,
                           "ci_low": math.nan, "ci_high": math.nan, "z": math.nan, "p_value": math.nan,
                           "note": "; ".join(notes)}
    if diffs:
        comb = combine_differences(diffs, ses)
        rec.update(auc_ddsm=float(np.mean(auc_d)), auc_random=float(np.mean(auc_r)), diff=comb.diff, se=comb.se,
                   ci_low=comb.ci_low, ci_high=comb.ci_high, z=comb.z, p_value=comb.p_value)
    return rec


# ------------------------------------------------------------------------------ controls
CONTROLS_COLUMNS = ["dataset", "models", "no_ft_gap", "no_ft_ci_low", "no_ft_ci_high", "no_ft_p_holm",
                    "ddsm_no_ft_auc", "models_gap_ge_0.10", "ft_0.2_gap", "ft_0.2_ci_low", "ft_0.2_ci_high",
                    "ft_0.2_p_holm", "random_ft_0.2_auc_min", "svcca_block_mean", "svcca_block_baseline"]


def controls_table(pooled: pd.DataFrame, combined: pd.DataFrame, cells: dict[tuple[str, ...], dict[str, Any]],
                   cca: pd.DataFrame) -> pd.DataFrame:
    """Per target: the pooled No-FT and FT 0.2 DDSM - random gaps, per-model gaps, and the SVCCA block mean.

    ``cells`` are the report's aggregated cells (mean AUC over seeds); ``cca`` the report's
    CCA table. The same numbers whatever the datasets are called: the table says what the
    data hold, the reader compares it with what the data were built to hold.
    """
    no_ft, last = fraction_key(0.0), fraction_key(max(DESIGN.ft_fractions))
    rows = []
    for dataset in DESIGN.target_datasets:
        p0 = pooled[(pooled["dataset"] == dataset) & (pooled["ft_fraction"] == no_ft)]
        p2 = pooled[(pooled["dataset"] == dataset) & (pooled["ft_fraction"] == last)]
        c0 = combined[(combined["dataset"] == dataset) & (combined["ft_fraction"] == no_ft)]
        if p0.empty and p2.empty and c0.empty:
            continue
        ddsm_no_ft = [cells[k]["mean"] for k in cells if k[0] == dataset and k[2] == "ddsm" and k[3] == "all"
                      and k[4] == no_ft]
        random_last = [cells[k]["mean"] for k in cells if k[0] == dataset and k[2] == "random" and k[3] == "all"
                       and k[4] == last]
        blocks = cca[(cca["dataset"] == dataset) & cca["layer"].isin(CCA_BLOCKS)] if len(cca) else cca

        def first(frame: pd.DataFrame, col: str) -> float:
            return float(frame[col].iloc[0]) if len(frame) else math.nan

        rows.append({
            "dataset": dataset,
            "models": first(p0, "n_models") if len(p0) else len(c0),
            "no_ft_gap": first(p0, "diff"), "no_ft_ci_low": first(p0, "ci_low"),
            "no_ft_ci_high": first(p0, "ci_high"), "no_ft_p_holm": first(p0, "p_holm"),
            "ddsm_no_ft_auc": float(np.mean(ddsm_no_ft)) if ddsm_no_ft else math.nan,
            "models_gap_ge_0.10": int((c0["diff"] >= 0.10).sum()),
            "ft_0.2_gap": first(p2, "diff"), "ft_0.2_ci_low": first(p2, "ci_low"),
            "ft_0.2_ci_high": first(p2, "ci_high"), "ft_0.2_p_holm": first(p2, "p_holm"),
            "random_ft_0.2_auc_min": float(np.min(random_last)) if random_last else math.nan,
            "svcca_block_mean": float(blocks["similarity"].mean()) if len(blocks) else math.nan,
            "svcca_block_baseline": float(blocks["baseline"].mean()) if len(blocks) else math.nan,
        })
    return pd.DataFrame(rows, columns=CONTROLS_COLUMNS)
