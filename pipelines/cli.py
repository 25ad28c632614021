"""The `tlstudy` command: one group, one sub-command per job.

Sub-commands are imported on first use, so `tlstudy data check` does not pay for
importing torch and MLflow.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

# name -> "module:attribute" of the click command
COMMANDS: dict[str, str] = {
    "synth": "pipelines.data_cmds:synth",
    "data": "pipelines.data_cmds:data_group",
    "server": "pipelines.server:main",
    "pretrain": "pipelines.pretrain:main",
    "finetune": "pipelines.finetune:main",
    "cca": "pipelines.cca:main",
    "study": "pipelines.study:main",
    "report": "pipelines.report:main",
    "weights": "pipelines.weights_cmds:weights_group",
    "mlproject": "pipelines.mlproject:main",
    "journal": "pipelines.journal:journal_group",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported when they are first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.available()))

    @staticmethod
    def available() -> list[str]:
        return [name for name, target in COMMANDS.items() if importlib.util.find_spec(target.split(":")[0])]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None or name not in COMMANDS:
            return command
        module_name, attribute = COMMANDS[name].split(":")
        if importlib.util.find_spec(module_name) is None:
            return None
        command = getattr(importlib.import_module(module_name), attribute)
        command.name = name
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tlstudy")
def main() -> None:
    """tlstudy: MLflow-tracked transfer-learning studies for breast-cancer imaging."""


if __name__ == "__main__":  # pragma: no cover
    main()
