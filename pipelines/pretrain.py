"""`pretrain` entry point: train on CBIS-DDSM, register the checkpoint as `ddsm-<model>`.

    mlflow run . -e pretrain -P model=resnet50 --env-manager local
    tlstudy pretrain --model resnet50

Its parameters are :class:`tlcore.experiment.PretrainConfig`'s fields (``--help`` lists them).
"""

from __future__ import annotations

import click

from pipelines._common import (announce_finished, finished_run_for, friendly_errors, open_session, record_result,
                               runtime_options)
from pipelines._options import StepCommand, build_config, config_options, config_values, runtime_option, same_meaning
from tlcore.experiment import PretrainConfig


@click.command("pretrain", cls=StepCommand)
@config_options(PretrainConfig)
@runtime_option("--imagenet-weights", default="", help="ImageNet state-dict file (default: torch hub cache).")
@runtime_options(log_model=True)
@friendly_errors
def main(imagenet_weights, experiment, tracking_uri, parent_run_id, progress, log_model, **values) -> None:
    """Pre-train on the CBIS-DDSM training split, evaluate on its test split, register the model.

    The registry alias `champion` moves to the new version when its DDSM test AUC beats
    the current champion's (or there is none).
    """
    from tlcore.data.cache import dataset_fingerprint
    from tlcore.data.splits import SplitConfig, official_split
    from tlcore.experiment import read_records, run_pretrain
    from tlcore.models import get_spec, resolve_imagenet_file
    from tracking.logger import RunLogger
    from tracking.registry import promote_if_better, register_checkpoint
    from tracking.schema import CHAMPION_ALIAS, STAGE_PRETRAIN, Artifact, Tag, registered_model_name, run_name
    from tracking.serialize import flatten_params, to_jsonable

    if not log_model:
        raise click.UsageError("pretrain must log its model: the registry and DDSM fine-tunes reuse it")
    config = build_config(PretrainConfig, **config_values(PretrainConfig, values))
    model = config.model
    # Arguments, data and prerequisites first: a bad one fails before any run is opened.
    records = read_records(config.dataset, config.data_root).records
    try:
        official_split(records, SplitConfig(seed=config.seed))
    except ValueError as exc:
        raise click.ClickException(f"{config.dataset}: cannot split the dataset: {exc}") from None
    weights_file = None
    if config.init == "imagenet":  # the patch CNN's body is a ResNet-50
        body = "resnet50" if model == "patch_cnn" else model
        weights_file = resolve_imagenet_file(get_spec(body), imagenet_weights or None)
    session = open_session(tracking_uri, experiment, parent_run_id)
    fingerprint = dataset_fingerprint(records)
    done = finished_run_for(config, session.experiment, fingerprint)
    if done is not None:
        announce_finished(done)
        return

    name = run_name(STAGE_PRETRAIN, "ddsm", model, config.init, None, None, config.seed)
    with RunLogger(name, config.config_hash(), stage=STAGE_PRETRAIN, experiment=session.experiment,
                   tags={Tag.DATASET_FINGERPRINT: fingerprint}, parent_run_id=parent_run_id or None) as run:
        if not run.completed:
            run.log_params(flatten_params(config), same=lambda key, text: same_meaning(config, key, text))
            run.log_dict(to_jsonable(config), Artifact.CONFIG)
            result = run_pretrain(config, imagenet_weights=weights_file, checkpoint_dir=run.checkpoint_dir,
                                  on_epoch_end=run.on_epoch_end, progress=progress)
            record_result(run, result, log_model=True)
            ev = result.evaluation
            click.echo(f"{name}: DDSM test AUC {ev.auc:.3f} [{ev.ci_low:.3f}, {ev.ci_high:.3f}] (n={ev.n})")
        else:
            click.echo(f"completed from the local journal: {run.run_id}")
    model_name = registered_model_name(model)
    version = register_checkpoint(run.run_id, Artifact.MODEL, model_name)
    promoted = promote_if_better(model_name, version)
    state = f"now '{CHAMPION_ALIAS}'" if promoted else f"'{CHAMPION_ALIAS}' stays on the better earlier version"
    click.echo(f"registered {model_name} version {version} from run {run.run_id}; {state}")


if __name__ == "__main__":  # pragma: no cover
    main()
