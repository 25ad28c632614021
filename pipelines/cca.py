"""`cca` entry point: per-layer similarity of the DDSM model before vs after fine-tuning (Figure 1).

    mlflow run . -e cca -P dataset=mias --env-manager local
    tlstudy cca --dataset inbreast --dataset mias --dataset ultrasound --measures svcca,cka

One MLflow run per dataset (stage ``cca``). Metrics ``cca_<layer>`` (SVCCA) and
``cca_baseline_<layer>`` (against a random network), plus ``<measure>_<layer>`` /
``<measure>_baseline_<layer>`` for each extra measure; artifacts ``cca/similarity.csv``,
``cca/similarity.json`` and ``cca/figure1.png``. With several datasets the combined
Figure 1 is also logged on the last run as ``cca/figure1_combined.png``.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from pipelines._common import (announce_finished, check_model_weights, check_split, data_tags, finished_run_for,
                               friendly_errors, open_session, runtime_options)
from pipelines._options import StepCommand, build_config, config_options, config_values, runtime_option, same_meaning
from tlcore.analysis import CcaConfig

TARGET_DATASETS = ("inbreast", "mias", "ultrasound")
TABLE_ARTIFACT = "cca/similarity.csv"
JSON_ARTIFACT = "cca/similarity.json"
FIGURE_ARTIFACT = "cca/figure1.png"
COMBINED_FIGURE_ARTIFACT = "cca/figure1_combined.png"
DEFAULT_COMBINED_FIGURE = "cca_figure1_combined.png"


def _split_list(values: tuple[str, ...] | str) -> list[str]:
    """``("a,b", "c")`` -> ``["a", "b", "c"]`` (order kept, duplicates and blanks dropped)."""
    items = [values] if isinstance(values, str) else list(values)
    out = [part.strip() for item in items for part in str(item).split(",")]
    return list(dict.fromkeys(p for p in out if p))


def _datasets(values: tuple[str, ...]) -> list[str]:
    names = _split_list(values) or ["mias"]
    bad = [n for n in names if n not in TARGET_DATASETS]
    if bad:
        raise click.BadParameter(f"unknown dataset(s) {bad}; valid: {', '.join(TARGET_DATASETS)}",
                                 param_hint="--dataset")
    return names


def _same_param(config: Any, key: str, text: str) -> bool:
    """``same_meaning``, where `mlflow run -P dataset=a,b` logged the whole list on the first dataset's run."""
    if key == "dataset":
        return config.dataset in _split_list(text)
    return same_meaning(config, key, text)


def _figure_title(model: str, datasets: list[str]) -> str:
    which = ", ".join(datasets)
    return f"{model} per-layer SVCCA: DDSM model vs fine-tuned on {which} (dashed: random net)"


def _plot(table: Any, path: Path, model: str) -> Path:
    from tracking.figures import plot_cca

    datasets = list(dict.fromkeys(table["dataset"])) if len(table) else []
    return plot_cca(table, path, title=_figure_title(model, datasets))


def _json_records(table: Any) -> list[dict[str, Any]]:
    records = []
    for row in table.to_dict("records"):
        clean = {}
        for key, value in row.items():
            if hasattr(value, "item"):
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            clean[key] = value
        records.append(clean)
    return records


def _figure_rows_of_finished_run(run_id: str, dataset: str, tmp: Path) -> Any | None:
    """Figure-1 rows (dataset, layer, similarity, baseline) from a finished run's table, or None."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from tracking.store import get_client

    try:
        local = get_client().download_artifacts(run_id, TABLE_ARTIFACT, str(tmp / run_id))
    except (MlflowException, OSError) as exc:
        click.echo(f"warning: cannot read {TABLE_ARTIFACT} of run {run_id} ({dataset}): {exc}", err=True)
        return None
    table = pd.read_csv(local)
    sv = table[table["measure"] == "svcca"]
    return pd.DataFrame({"dataset": dataset, "layer": sv["layer"].to_numpy(),
                         "similarity": sv["value"].to_numpy(dtype=float),
                         "baseline": sv["baseline"].to_numpy(dtype=float)})


def _summary(name: str, result: Any, run_id: str | None) -> str:
    table = result.table
    sv = table[table["measure"] == "svcca"]
    parts = [f"{r.layer} {r.value:.3f} (random {r.baseline:.3f})" for r in sv.itertuples(index=False)]
    return f"{name}: SVCCA {'; '.join(parts)} run {run_id}"


def rank_cap_text(table: Any) -> str:
    """``"block3: <note> | block4: <note>"`` for the SVCCA rows whose kept directions were capped."""
    sv = table[(table["measure"] == "svcca") & (table["note"].astype(str) != "")]
    return " | ".join(f"{r.layer}: {r.note}" for r in sv.itertuples(index=False))


def source_run(config: Any, experiment: str, fingerprint: str) -> Any:
    """The FINISHED fine-tune run whose network the analysis compares (raises a one-line error if none)."""
    from tracking.schema import STAGE_FINETUNE, run_name

    source = config.source_finetune_config()
    run = finished_run_for(source, experiment, fingerprint)
    if run is None:
        name = run_name(STAGE_FINETUNE, source.dataset, source.model, source.init, source.ft_fraction,
                        source.transfer, source.seed)
        raise click.ClickException(
            f"{config.dataset}: no FINISHED run '{name}' (config {source.config_hash()}) in experiment "
            f"{experiment!r}: the analysis compares the network that fine-tune trained; run it first with the same "
            f"settings: tlstudy finetune --dataset {source.dataset} --model {source.model} --init {source.init} "
            f"--ft-fraction {source.ft_fraction} --seed {source.seed} --epochs {source.epochs} --lr {source.lr} "
            f"--batch-size {source.batch_size} --image-size {source.image_size or 0}")
    return run


def record_cca(run: Any, result: Any, *, model: str, tmp: Path) -> None:
    """Log a :class:`tlcore.analysis.CcaResult` to an open RunLogger."""
    import pandas as pd

    from tracking.schema import Artifact, Tag

    cfg = result.config
    run.set_tags({Tag.SPLIT_HASH: result.split_hash, Tag.DATASET_FINGERPRINT: result.dataset_fingerprint,
                  **data_tags(cfg.data_root)})
    metrics: dict[str, float] = dict(result.metrics())
    metrics.update({
        "n_test_images": result.n_test_images,
        "n_finetune_train": result.n_finetune_train,
        "n_finetune_val": result.n_finetune_val,
        "n_skipped_images": len(result.skipped),
    })
    run.log_metrics(metrics)
    caps = rank_cap_text(result.table)
    if caps:
        run.set_tags({Tag.CCA_RANK_CAP: caps})
    run.log_dataframe(result.table, TABLE_ARTIFACT)
    run.log_dict({
        "dataset": cfg.dataset, "model": cfg.model, "seed": cfg.seed, "measures": list(cfg.measures),
        "keep": cfg.keep, "mode": cfg.mode, "max_positions": cfg.max_positions, "ft_fraction": cfg.ft_fraction,
        "input_size": list(cfg.input_size()), "split_hash": result.split_hash,
        "n_test_images": result.n_test_images, "baseline": "random network of the same architecture (seeded)",
        "metric_names": {m: ("cca" if m == "svcca" else m) for m in cfg.measures},
        "rows": _json_records(result.table),
    }, JSON_ARTIFACT)
    run.log_dataframe(pd.DataFrame(result.manifest), Artifact.SPLIT_MANIFEST)
    if result.skipped:
        run.log_dataframe(pd.DataFrame([s.as_dict() for s in result.skipped]), "data/skipped.csv")
    figure = _plot(result.figure_table(), tmp / f"figure1-{cfg.dataset}.png", model)
    run.log_file(figure, FIGURE_ARTIFACT)


@click.command("cca", cls=StepCommand)
@config_options(CcaConfig, multiple=("dataset",))
@runtime_option("--ddsm-model-uri", default="", help="DDSM checkpoint: models:/name@alias, models:/name/N or "
                "runs:/<id> (default: models:/ddsm-<model>@champion).")
@runtime_option("--combined-figure", default="", help="Also save the combined Figure 1 PNG to this path "
                "(when no run of this call could take it, e.g. all were done, it goes to "
                "./cca_figure1_combined.png by default).")
@runtime_options(log_model=False)
@friendly_errors
def main(ddsm_model_uri, combined_figure, experiment, tracking_uri, parent_run_id, progress, **values) -> None:
    """Similarity of the DDSM-pretrained model before and after fine-tuning on 20 % of each dataset.

    Per layer (conv1, block1..block4): SVCCA (and the other --measures) between the
    DDSM model and the network that `finetune --init ddsm --ft-fraction 0.2` (same settings
    and seed) trained and scored, loaded from that run, over its test images, with a
    random network as the baseline. This analysis logs no model.
    """
    import pandas as pd

    from tlcore.analysis import run_cca
    from tlcore.data.cache import dataset_fingerprint
    from tlcore.experiment import read_records
    from tracking.logger import RunLogger
    from tracking.registry import resolve_ddsm_model
    from tracking.schema import STAGE_CCA, Artifact, Tag, run_name
    from tracking.serialize import flatten_params, to_jsonable

    names = _datasets(values.pop("dataset"))
    common = config_values(CcaConfig, values, exclude=("dataset",))
    configs = {d: build_config(CcaConfig, dataset=d, **common) for d in names}
    model, seed = configs[names[0]].model, configs[names[0]].seed
    # Arguments, data and splits first, so that a bad one fails before any run is opened (and
    # before hours are spent on the datasets listed before it).
    records = {d: read_records(d, cfg.data_root).records for d, cfg in configs.items()}
    for d in names:
        check_split(d, records[d], configs[d].seed, configs[d].ft_fraction)
    session = open_session(tracking_uri, experiment, parent_run_id)
    experiment = session.experiment
    fingerprints = {d: dataset_fingerprint(records[d]) for d in names}
    done = {d: finished_run_for(cfg, experiment, fingerprints[d]) for d, cfg in configs.items()}
    todo = [d for d in names if done[d] is None]
    for d in names:
        if done[d] is not None:
            if todo:  # the launcher's run (under `mlflow run`) takes the first dataset still to do
                click.echo(f"already finished: {done[d].info.run_id} ({done[d].info.run_name})")
            else:
                announce_finished(done[d])
    resolved = resolve_ddsm_model(model, uri=ddsm_model_uri or None) if todo else None
    if resolved is not None:
        check_model_weights(SimpleNamespace(model=model, init="ddsm"), ddsm_state=resolved.state_dict_path)
    sources = {d: source_run(configs[d], experiment, fingerprints[d]) for d in todo}
    several = len(names) > 1
    figure_rows: dict[str, Any] = {}
    combined_logged = False
    with tempfile.TemporaryDirectory(prefix="tlstudy-cca-") as tmp_name:
        tmp = Path(tmp_name)
        if several:
            for d in names:
                if done[d] is not None:
                    rows = _figure_rows_of_finished_run(done[d].info.run_id, d, tmp)
                    if rows is not None:
                        figure_rows[d] = rows

        def combined() -> pd.DataFrame:
            return pd.concat([figure_rows[d] for d in names if d in figure_rows], ignore_index=True)

        for d in todo:
            config = configs[d]
            name = run_name(STAGE_CCA, d, model, "ddsm", None, None, seed)
            source = sources[d]
            finetuned = resolve_ddsm_model(model, uri=f"runs:/{source.info.run_id}")
            tags = {Tag.DATASET_FINGERPRINT: fingerprints[d], Tag.CCA_SOURCE_RUN_ID: source.info.run_id,
                    **resolved.as_tags()}
            with RunLogger(name, config.config_hash(), stage=STAGE_CCA, experiment=experiment, tags=tags,
                           parent_run_id=parent_run_id or None) as run:
                if run.completed:
                    click.echo(f"completed from the local journal: {run.run_id}")
                    if several:
                        rows = _figure_rows_of_finished_run(run.run_id, d, tmp)
                        if rows is not None:
                            figure_rows[d] = rows
                    continue
                params = flatten_params(config)
                params["ddsm_model_version"] = resolved.version or resolved.source_run_id
                run.log_params(params, same=lambda key, text, config=config: _same_param(config, key, text))
                run.log_dict(to_jsonable(config), Artifact.CONFIG)
                result = run_cca(config, resolved.state_dict_path, finetuned.state_dict_path, progress=progress)
                record_cca(run, result, model=model, tmp=tmp)
                figure_rows[d] = result.figure_table()
                if several and d == todo[-1]:
                    path = _plot(combined(), tmp / "figure1_combined.png", model)
                    run.log_file(path, COMBINED_FIGURE_ARTIFACT)
                    combined_logged = True
                    click.echo(f"combined Figure 1: run {run.run_id} artifact {COMBINED_FIGURE_ARTIFACT}")
            click.echo(_summary(name, result, run.run_id))
            noted = list(dict.fromkeys(result.table.loc[result.table["note"] != "", "layer"]))
            if noted:
                click.echo(f"  note on {', '.join(noted)}: SVCCA capped to the datapoints available or a measure "
                           f"undefined; see the 'note' column of {TABLE_ARTIFACT}")

        target = combined_figure or (DEFAULT_COMBINED_FIGURE if several and not combined_logged else "")
        if target and figure_rows:
            path = _plot(combined(), Path(target), model)
            click.echo(f"combined Figure 1 written to {path.resolve()}")


if __name__ == "__main__":  # pragma: no cover
    main()
