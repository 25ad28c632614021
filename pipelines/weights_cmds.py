"""`tlstudy weights`: the ImageNet weights files in torch's hub cache, listed and fetched.

    tlstudy weights list
    tlstudy weights fetch --model resnet50      # on a login node; compute nodes then read the cache
    tlstudy weights fetch --all
"""

from __future__ import annotations

import click


def _imagenet_models() -> list[str]:
    from tlcore.models import get_spec, model_names

    return [name for name in model_names() if get_spec(name).imagenet_weights]


@click.group("weights", context_settings={"help_option_names": ["-h", "--help"]})
def weights_group() -> None:
    """ImageNet weights in torch's hub cache ($TORCH_HOME/hub/checkpoints)."""


@weights_group.command("list")
def list_weights() -> None:
    """Each model's torchvision weights, its file in the hub cache and whether it is there."""
    from tlcore.models import get_spec, hub_checkpoint_dir
    from tlcore.models.weights import cached_weights_path, weights_members

    click.echo(f"hub cache: {hub_checkpoint_dir()}")
    click.echo(f"{'model':<14} {'weights':<36} {'cached':<7} file")
    for name in _imagenet_models():
        for member in weights_members(get_spec(name)):
            path = cached_weights_path(member)
            click.echo(f"{name:<14} {member:<36} {'yes' if path.is_file() else 'no':<7} {path.name}")


@weights_group.command("fetch")
@click.option("--model", "models", multiple=True, metavar="MODEL",
              help="Model whose default ImageNet weights to download (repeatable).")
@click.option("--all", "all_models", is_flag=True, help="Every model that has ImageNet weights.")
@click.option("--weights", "member", default=None,
              help="A weights enum member instead of the model's default (e.g. IMAGENET1K_V2).")
def fetch(models: tuple[str, ...], all_models: bool, member: str | None) -> None:
    """Download ImageNet weights into the hub cache (run it where there is network)."""
    from tlcore.models import WeightsNotFoundError, get_spec
    from tlcore.models.weights import (
        cached_weights_path,
        download_weights,
        weights_members,
    )

    valid = _imagenet_models()
    names = valid if all_models else list(models)
    if not names:
        raise click.UsageError(f"give --model MODEL or --all (models with ImageNet weights: {', '.join(valid)})")
    for name in names:
        if name not in valid:
            raise click.BadParameter(f"{name!r} has no ImageNet weights; choose from {', '.join(valid)}",
                                     param_hint="--model")
    if member and len(names) != 1:
        raise click.UsageError("--weights goes with exactly one --model")
    for name in names:
        spec = get_spec(name)
        members = weights_members(spec)
        chosen = members[0]
        if member:
            chosen = next((m for m in members if member in (m, m.split(".", 1)[1])), "")
            if not chosen:
                raise click.BadParameter(f"{member!r} is not a weights member of {name}; valid: {', '.join(members)}",
                                         param_hint="--weights")
        was_cached = cached_weights_path(chosen).is_file()
        try:
            path = download_weights(chosen, progress=True)
        except WeightsNotFoundError as exc:
            raise click.ClickException(f"{name}: {exc}") from exc
        click.echo(f"{name}: {chosen} {'already cached' if was_cached else 'downloaded'} at {path}")
