"""The demo's controls table: does the study detect the look-alike controls, and how long did it take?

Run from the repository root, after (or with ``--run``) the README's main job::

    python benchmarks/study_demo.py [--run] [--experiment tlstudy-demo] [--report-dir reports/tlstudy-demo]
                                    [--write-readme]

It reads the report the study wrote (``controls.csv``, ``pretraining.csv``, ``delong.csv``,
``cca.csv``) and the experiment's runs, and prints:

* per target: the No-FT DDSM - random gap (mean over models, pooled DeLong contrast) with its
  95% CI and Holm p-value, how many models have a gap >= 0.10, the DDSM No-FT AUC, the FT 0.2
  gap, the lowest random-init FT 0.2 AUC, and the SVCCA mean over block1-block4;
* each model's DDSM test AUC with its CI;
* the check of every target against what the look-alike generator built each dataset to be
  (``tlcore.data.synth.controls``: positive or negative control) -- the study itself never
  reads that declaration;
* the wall time split by stage (child runs' durations from the store) and the study's total.

``--run`` first runs ``tlstudy study --profile demo`` (timed). ``--write-readme`` replaces the
block between ``<!-- demo-figures:start -->`` and ``<!-- demo-figures:end -->`` in README.md
with the printed figures, so every figure the README quotes comes from this script.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

try:
    import tracking  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tlcore.data.synth.controls import CONTROL_ROLES, NEGATIVE, POSITIVE, ControlTargets
from tracking.schema import Tag

README_START = "<!-- demo-figures:start -->"
README_END = "<!-- demo-figures:end -->"


def _f(x: float, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NA"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _p(p: float) -> str:
    return "NA" if p is None or math.isnan(p) else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")


def stage_times(experiment: str, tracking_uri: str | None) -> tuple[pd.DataFrame, float]:
    """(per-stage run count, summed and wall seconds; the study's own duration metric)."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(experiment_names=[experiment], max_results=50_000)
    if runs.empty:
        return pd.DataFrame(columns=["stage", "runs", "sum_s", "wall_s"]), math.nan
    stage = runs[f"tags.{Tag.STAGE}"].fillna("?")
    hybrid = runs.get("params.transfer", pd.Series(index=runs.index, dtype=object)).eq("hybrid")
    runs = runs.assign(stage=stage.where(~hybrid, stage + "-hybrid"),
                       seconds=(runs["end_time"] - runs["start_time"]).dt.total_seconds())
    children = runs[runs["stage"].isin(["pretrain", "finetune", "finetune-hybrid", "cca"])]
    rows = []
    for name, grp in children.groupby("stage", sort=False):
        wall = (grp["end_time"].max() - grp["start_time"].min()).total_seconds()
        rows.append({"stage": name, "runs": len(grp), "sum_s": grp["seconds"].sum(), "wall_s": wall})
    study = runs[runs["stage"] == "study"].sort_values("start_time")
    total = float(study["metrics.study.duration_s"].iloc[-1]) if len(study) and \
        "metrics.study.duration_s" in study else math.nan
    return pd.DataFrame(rows), total


def checks(controls: pd.DataFrame, pretraining: pd.DataFrame, delong: pd.DataFrame,
           targets: ControlTargets) -> list[tuple[str, bool | None, str]]:
    """Each target of the demo against the generator's declared controls: (what, met or None, measured)."""
    out: list[tuple[str, bool | None, str]] = []
    auc = pretraining.groupby("model")["test_auc"].min()
    out.append((f"every model's DDSM test AUC >= {targets.min_ddsm_test_auc}",
                bool(len(auc) and (auc >= targets.min_ddsm_test_auc).all()),
                ", ".join(f"{m} {_f(v)}" for m, v in auc.items())))
    by = controls.set_index("dataset")
    positive = [d for d, r in CONTROL_ROLES.items() if r == POSITIVE and d in by.index]
    negative = [d for d, r in CONTROL_ROLES.items() if r == NEGATIVE and d in by.index]
    no_ft = delong[delong["ft_fraction"].astype(str) == "0.0"]
    for d in positive:
        gap = by.at[d, "no_ft_gap"]
        out.append((f"{d} (positive control): No-FT gap >= {targets.min_positive_no_ft_gap}",
                    bool(gap >= targets.min_positive_no_ft_gap), f"{_f(gap, True)} (Holm p {_p(by.at[d, 'no_ft_p_holm'])})"))
        per_model = no_ft[no_ft["dataset"] == d]
        n_ok = int((per_model["diff"] >= targets.min_positive_model_gap).sum())
        measured = ", ".join(f"{r.model} {_f(r.diff, True)}" for r in per_model.itertuples(index=False))
        if len(per_model) < targets.min_positive_models:
            out.append((f"{d}: per-model No-FT gap >= {targets.min_positive_model_gap} for >= "
                        f"{targets.min_positive_models} models", None,
                        f"not measurable: the study ran {len(per_model)} model(s) ({measured})"))
        else:
            out.append((f"{d}: per-model No-FT gap >= {targets.min_positive_model_gap} for >= "
                        f"{targets.min_positive_models} models", n_ok >= targets.min_positive_models, measured))
        out.append((f"{d}: FT 0.2 gap smaller than the No-FT gap", bool(by.at[d, "ft_0.2_gap"] < gap),
                    f"{_f(by.at[d, 'ft_0.2_gap'], True)} vs {_f(gap, True)}"))
    for d in negative:
        gap = by.at[d, "no_ft_gap"]
        out.append((f"{d} (negative control): No-FT gap <= {targets.max_negative_no_ft_gap}",
                    bool(gap <= targets.max_negative_no_ft_gap), _f(gap, True)))
        out.append((f"{d}: DDSM No-FT AUC <= {targets.max_negative_ddsm_no_ft_auc}",
                    bool(by.at[d, "ddsm_no_ft_auc"] <= targets.max_negative_ddsm_no_ft_auc),
                    _f(by.at[d, "ddsm_no_ft_auc"])))
    for d in by.index:
        out.append((f"{d}: random-init FT 0.2 AUC >= {targets.min_random_ft_auc} (every model)",
                    bool(by.at[d, "random_ft_0.2_auc_min"] >= targets.min_random_ft_auc),
                    _f(by.at[d, "random_ft_0.2_auc_min"])))
    if negative:
        neg = float(by.loc[negative, "svcca_block_mean"].max())
        for d in positive:
            out.append((f"{d}: SVCCA block mean >= negative control + {targets.min_svcca_block_margin}",
                        bool(by.at[d, "svcca_block_mean"] >= neg + targets.min_svcca_block_margin),
                        f"{_f(by.at[d, 'svcca_block_mean'])} vs {_f(neg)}"))
    return out


def render(report_dir: Path, experiment: str, tracking_uri: str | None, demo_wall_s: float | None) -> str:
    controls = pd.read_csv(report_dir / "controls.csv")
    pretraining = pd.read_csv(report_dir / "pretraining.csv", dtype={"seed": str})
    delong = pd.read_csv(report_dir / "delong.csv", dtype={"ft_fraction": str})
    lines = ["Controls (DDSM minus random initialisation; pooled over models; 95% CI; Holm-adjusted p):", ""]
    lines.append("| target | No-FT gap [95% CI] | Holm p | models gap>=0.10 | DDSM No-FT AUC | FT 0.2 gap [95% CI] "
                 "| random FT 0.2 AUC (min) | SVCCA block1-4 (random net) |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in controls.to_dict("records"):
        lines.append(
            f"| {r['dataset']} | {_f(r['no_ft_gap'], True)} [{_f(r['no_ft_ci_low'], True)}, "
            f"{_f(r['no_ft_ci_high'], True)}] | {_p(r['no_ft_p_holm'])} | {r['models_gap_ge_0.10']} of "
            f"{int(r['models'])} | {_f(r['ddsm_no_ft_auc'])} | {_f(r['ft_0.2_gap'], True)} "
            f"[{_f(r['ft_0.2_ci_low'], True)}, {_f(r['ft_0.2_ci_high'], True)}] | {_f(r['random_ft_0.2_auc_min'])} | "
            f"{_f(r['svcca_block_mean'])} ({_f(r['svcca_block_baseline'])}) |")
    lines += ["", "DDSM pre-training (test AUC [95% CI]): " + "; ".join(
        f"{r.model} {_f(r.test_auc)} [{_f(r.ci_low)}, {_f(r.ci_high)}]" for r in pretraining.itertuples(index=False))]
    lines += ["", "Against the controls the look-alike generator built (tlcore.data.synth.controls):"]
    for what, ok, measured in checks(controls, pretraining, delong, ControlTargets()):
        verdict = "n/a" if ok is None else ("met" if ok else "NOT MET")
        lines.append(f"- [{verdict}] {what}: {measured}")
    times, total = stage_times(experiment, tracking_uri)
    lines += ["", "Wall time by stage (child runs; sum of run durations / first start to last end):"]
    for r in times.itertuples(index=False):
        lines.append(f"- {r.stage}: {r.runs} runs, {r.sum_s / 60:.1f} min summed, {r.wall_s / 60:.1f} min wall")
    if not math.isnan(total):
        lines.append(f"- the study runner (children, retries, report): {total / 60:.1f} min")
    if demo_wall_s is not None:
        lines.append(f"- the whole command (`tlstudy study --profile demo`, data included): {demo_wall_s / 60:.1f} min")
    return "\n".join(lines)


def write_readme(readme: Path, text: str) -> None:
    """Replace the README's demo-figures block with ``text``."""
    body = readme.read_text(encoding="utf-8")
    if README_START not in body or README_END not in body:
        raise SystemExit(f"{readme}: no {README_START} ... {README_END} block to replace")
    head, rest = body.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{text}\n{README_END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run `tlstudy study --profile demo` first (timed)")
    parser.add_argument("--experiment", default="tlstudy-demo")
    parser.add_argument("--report-dir", type=Path, default=None, help="default: reports/<experiment>")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    parser.add_argument("--write-readme", action="store_true", help="write the figures into README.md")
    args = parser.parse_args(argv)
    from tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    wall = None
    if args.run:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "pipelines.cli", "study", "--profile", "demo", "--tracking-uri", uri]
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
    report_dir = args.report_dir or Path("reports") / args.experiment
    if not (report_dir / "controls.csv").is_file():
        print(f"{report_dir}: no controls.csv; run the demo first (python benchmarks/study_demo.py --run)",
              file=sys.stderr)
        return 1
    text = render(report_dir, args.experiment, uri, wall)
    print(text)
    if args.write_readme:
        write_readme(Path("README.md"), text)
        print("README.md: demo figures updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
