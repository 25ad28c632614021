"""The `tlstudy` command: one group, one sub-command per job."""

from __future__ import annotations

import click

from pipelines.data_cmds import data_group, synth
from pipelines.demo import demo
from pipelines.finetune import main as finetune
from pipelines.pretrain import main as pretrain


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tlstudy")
def main() -> None:
    """tlstudy: MLflow-tracked transfer-learning studies for breast-cancer imaging."""


main.add_command(synth)
main.add_command(data_group)
main.add_command(demo)
main.add_command(pretrain)
main.add_command(finetune)


if __name__ == "__main__":  # pragma: no cover
    main()
