"""`finetune` entry point: evaluate (ft_fraction 0) or fine-tune a model on a target dataset.

    mlflow run . -e finetune -P dataset=mias -P init=ddsm --env-manager local
    tlstudy finetune --dataset mias --init ddsm --ft-fraction 0.1

Its parameters are :class:`tlcore.experiment.FinetuneConfig`'s fields (``--help`` lists them).
"""

from __future__ import annotations

import click

from pipelines._common import (announce_finished, check_model_weights, check_split, finished_run_for, friendly_errors,
                               open_session, record_result, runtime_options)
from pipelines._options import StepCommand, build_config, config_options, config_values, runtime_option, same_meaning
from tlcore.experiment import FinetuneConfig


@click.command("finetune", cls=StepCommand)
@config_options(FinetuneConfig)
@runtime_option("--ddsm-model-uri", default="", help="DDSM checkpoint: models:/name@alias, models:/name/N or "
                "runs:/<id> (default: models:/ddsm-<model>@champion).")
@runtime_option("--imagenet-weights", default="", help="ImageNet state-dict file (default: torch hub cache).")
@runtime_options(log_model=True)
@friendly_errors
def main(ddsm_model_uri, imagenet_weights, experiment, tracking_uri, parent_run_id, progress, log_model,
         **values) -> None:
    """Fine-tune and evaluate one configuration, logged as one MLflow run."""
    from tlcore.data.cache import dataset_fingerprint
    from tlcore.design import PAPER_DESIGN, Cell
    from tlcore.experiment import read_records, run_finetune
    from tlcore.models import NotApplicableError, get_spec, resolve_imagenet_file
    from tracking.logger import RunLogger
    from tracking.registry import resolve_ddsm_model
    from tracking.schema import STAGE_FINETUNE, Artifact, Tag, run_name
    from tracking.serialize import flatten_params, to_jsonable

    config = build_config(FinetuneConfig, **config_values(FinetuneConfig, values))
    dataset, model, init = config.dataset, config.model, config.init
    # Arguments, data, split and weights first: a bad one fails before any run is opened.
    records = read_records(dataset, config.data_root).records
    check_split(dataset, records, config.seed, config.ft_fraction)
    weights_file = None
    if init == "imagenet":
        spec = get_spec(model)
        if not spec.supports_imagenet:
            raise NotApplicableError(f"{model} has no ImageNet initialisation (NA in the paper's tables)")
        weights_file = resolve_imagenet_file(spec, imagenet_weights or None)
    session = open_session(tracking_uri, experiment, parent_run_id)
    fingerprint = dataset_fingerprint(records)
    done = finished_run_for(config, session.experiment, fingerprint)
    if done is not None:
        announce_finished(done)
        return
    resolved = None
    if init == "ddsm":
        resolved = resolve_ddsm_model(model, uri=ddsm_model_uri or None)
    if resolved is not None or weights_file is not None:
        check_model_weights(config, ddsm_state=resolved.state_dict_path if resolved else None,
                            imagenet_weights=weights_file)

    name = run_name(STAGE_FINETUNE, dataset, model, init, config.ft_fraction, config.transfer, config.seed)
    tags = {Tag.DATASET_FINGERPRINT: fingerprint, **(resolved.as_tags() if resolved else {})}
    with RunLogger(name, config.config_hash(), stage=STAGE_FINETUNE, experiment=session.experiment, tags=tags,
                   parent_run_id=parent_run_id or None) as run:
        if run.completed:
            click.echo(f"completed from the local journal: {run.run_id}")
            return
        params = flatten_params(config)
        if resolved is not None:
            params["ddsm_model_version"] = resolved.version or resolved.source_run_id
        run.log_params(params, same=lambda key, text: same_meaning(config, key, text))
        run.log_dict(to_jsonable(config), Artifact.CONFIG)
        result = run_finetune(
            config,
            ddsm_state=resolved.state_dict_path if resolved else None,
            imagenet_weights=weights_file,
            checkpoint_dir=run.checkpoint_dir,
            on_epoch_end=run.on_epoch_end,
            progress=progress,
        )
        # The CCA analysis loads the network this cell trained: keep its weights even without --log-model.
        cell = Cell(dataset, model, init, config.transfer, config.ft_fraction)
        record_result(run, result, log_model=log_model, log_weights=PAPER_DESIGN.is_cca_source(cell))
    ev = result.evaluation
    click.echo(f"{name}: test AUC {ev.auc:.3f} [{ev.ci_low:.3f}, {ev.ci_high:.3f}] (n={ev.n}) run {run.run_id}")


if __name__ == "__main__":  # pragma: no cover
    main()
