"""`pretrain` entry point: train on CBIS-DDSM, register the checkpoint as `ddsm-<model>`.

    mlflow run . -e pretrain -P model=resnet50 --env-manager local
    tlstudy pretrain --model resnet50
"""

from __future__ import annotations

import click

from pipelines._common import announce_finished, common_options, finished_run_for, friendly_errors, record_result, step_kwargs


@click.command("pretrain")
@click.option("--init", type=click.Choice(["random", "imagenet"]), default="random", show_default=True,
              help="Starting weights of the DDSM pre-training.")
@click.option("--imagenet-weights", default="", help="ImageNet state-dict file (default: torch hub cache).")
@common_options
@friendly_errors
def main(init, imagenet_weights, model, seed, image_size, epochs, lr, batch_size, data_root, num_workers, device,
         experiment, parent_run_id, log_model, progress) -> None:
    """Pre-train on the CBIS-DDSM training split, evaluate on its test split, register the model.

    The registry alias `champion` moves to the new version when its DDSM test AUC beats
    the current champion's (or there is none).
    """
    from tlcore.data.cache import dataset_fingerprint
    from tlcore.experiment import PretrainConfig, read_records, run_pretrain
    from tlcore.models import get_spec, resolve_imagenet_file
    from tracking.logger import RunLogger
    from tracking.registry import promote_if_better, register_checkpoint
    from tracking.schema import CHAMPION_ALIAS, STAGE_PRETRAIN, Artifact, Tag, registered_model_name, run_name
    from tracking.serialize import flatten_params, to_jsonable

    if not log_model:
        raise click.UsageError("pretrain must log its model: the registry and DDSM fine-tunes reuse it")
    config = PretrainConfig(init=init, **step_kwargs(model, seed, image_size, epochs, lr, batch_size, data_root,
                                                     num_workers, device))
    fingerprint = dataset_fingerprint(read_records(config.dataset, config.data_root).records)
    done = finished_run_for(config, experiment, fingerprint)
    if done is not None:
        announce_finished(done)
        return
    weights_file = None
    if init == "imagenet":  # the patch CNN's body is a ResNet-50
        body = "resnet50" if model == "patch_cnn" else model
        weights_file = resolve_imagenet_file(get_spec(body), imagenet_weights or None)

    name = run_name(STAGE_PRETRAIN, "ddsm", model, init, None, None, config.seed)
    with RunLogger(name, config.config_hash(), stage=STAGE_PRETRAIN, experiment=experiment,
                   tags={Tag.DATASET_FINGERPRINT: fingerprint}, parent_run_id=parent_run_id or None) as run:
        if not run.completed:
            run.log_params(flatten_params(config))
            run.log_dict(to_jsonable(config), Artifact.CONFIG)
            result = run_pretrain(config, imagenet_weights=weights_file, checkpoint_dir=run.checkpoint_dir,
                                  on_epoch_end=run.on_epoch_end, progress=progress)
            record_result(run, result, log_model=True)
            ev = result.evaluation
            click.echo(f"{name}: DDSM test AUC {ev.auc:.3f} [{ev.ci_low:.3f}, {ev.ci_high:.3f}] (n={ev.n})")
    model_name = registered_model_name(model)
    version = register_checkpoint(run.run_id, Artifact.MODEL, model_name)
    promoted = promote_if_better(model_name, version)
    state = f"now '{CHAMPION_ALIAS}'" if promoted else f"'{CHAMPION_ALIAS}' stays on the better earlier version"
    click.echo(f"registered {model_name} version {version} from run {run.run_id}; {state}")


if __name__ == "__main__":  # pragma: no cover
    main()
