"""`finetune` entry point: evaluate (ft_fraction 0) or fine-tune a model on a target dataset.

    mlflow run . -e finetune -P dataset=mias -P init=ddsm --env-manager local
    tlstudy finetune --dataset mias --init ddsm --ft-fraction 0.1
"""

from __future__ import annotations

import click

from pipelines._common import announce_finished, common_options, finished_run_for, friendly_errors, record_result, step_kwargs


@click.command("finetune")
@click.option("--dataset", type=click.Choice(["inbreast", "mias", "ultrasound", "ddsm"]), default="mias",
              show_default=True)
@click.option("--init", type=click.Choice(["random", "imagenet", "ddsm"]), default="random", show_default=True)
@click.option("--ft-fraction", type=float, default=0.1, show_default=True,
              help="Share of the dataset used for fine-tuning: 0 (evaluate as is), 0.1 or 0.2.")
@click.option("--transfer", type=click.Choice(["all", "hybrid"]), default="all", show_default=True,
              help="hybrid: reuse weights up to block2, light random top (Raghu et al. 2019).")
@click.option("--ddsm-model-uri", default="", help="DDSM checkpoint: models:/name@alias, models:/name/N or "
              "runs:/<id> (default: models:/ddsm-<model>@champion).")
@click.option("--imagenet-weights", default="", help="ImageNet state-dict file (default: torch hub cache).")
@common_options
@friendly_errors
def main(dataset, init, ft_fraction, transfer, ddsm_model_uri, imagenet_weights, model, seed, image_size, epochs,
         lr, batch_size, data_root, num_workers, device, experiment, parent_run_id, log_model, progress) -> None:
    """Fine-tune and evaluate one configuration, logged as one MLflow run."""
    from tlcore.data.cache import dataset_fingerprint
    from tlcore.design import PAPER_DESIGN, Cell
    from tlcore.experiment import FinetuneConfig, read_records, run_finetune
    from tlcore.models import NotApplicableError, get_spec, resolve_imagenet_file
    from tracking.logger import RunLogger
    from tracking.registry import resolve_ddsm_model
    from tracking.schema import STAGE_FINETUNE, Artifact, Tag, run_name
    from tracking.serialize import flatten_params, to_jsonable

    config = FinetuneConfig(
        dataset=dataset, init=init, ft_fraction=float(ft_fraction), transfer=transfer,
        **step_kwargs(model, seed, image_size, epochs, lr, batch_size, data_root, num_workers, device),
    )
    fingerprint = dataset_fingerprint(read_records(dataset, config.data_root).records)
    done = finished_run_for(config, experiment, fingerprint)
    if done is not None:
        announce_finished(done)
        return

    # Prerequisites first, so that a missing one fails before any run is opened.
    weights_file = None
    if init == "imagenet":
        spec = get_spec(model)
        if not spec.supports_imagenet:
            raise NotApplicableError(f"{model} has no ImageNet initialisation (NA in the paper's tables)")
        weights_file = resolve_imagenet_file(spec, imagenet_weights or None)
    resolved = None
    if init == "ddsm":
        resolved = resolve_ddsm_model(model, uri=ddsm_model_uri or None)

    name = run_name(STAGE_FINETUNE, dataset, model, init, config.ft_fraction, transfer, config.seed)
    tags = {Tag.DATASET_FINGERPRINT: fingerprint, **(resolved.as_tags() if resolved else {})}
    with RunLogger(name, config.config_hash(), stage=STAGE_FINETUNE, experiment=experiment, tags=tags,
                   parent_run_id=parent_run_id or None) as run:
        if run.completed:
            click.echo(f"completed from the local journal: {run.run_id}")
            return
        params = flatten_params(config)
        if resolved is not None:
            params["ddsm_model_version"] = resolved.version or resolved.source_run_id
        run.log_params(params)
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
        cell = Cell(dataset, model, init, transfer, config.ft_fraction)
        record_result(run, result, log_model=log_model, log_weights=PAPER_DESIGN.is_cca_source(cell))
    ev = result.evaluation
    click.echo(f"{name}: test AUC {ev.auc:.3f} [{ev.ci_low:.3f}, {ev.ci_high:.3f}] (n={ev.n}) run {run.run_id}")


if __name__ == "__main__":  # pragma: no cover
    main()
