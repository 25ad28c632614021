"""MLproject and the step commands' options both follow the typed step configs."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import ClassVar

import click
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipelines import mlproject  # noqa: E402
from pipelines._options import StepCommand, cli_fields, config_options, same_meaning  # noqa: E402
from tlcore.analysis import CcaConfig  # noqa: E402
from tlcore.experiment import FinetuneConfig, PretrainConfig  # noqa: E402
from tlcore.params import Opt  # noqa: E402

MLPROJECT = ROOT / "MLproject"


def test_committed_mlproject_is_what_the_configs_generate():
    assert MLPROJECT.read_text(encoding="utf-8") == mlproject.render(), "run `tlstudy mlproject` and commit MLproject"


def test_mlproject_parameters_match_the_commands_both_ways():
    assert mlproject.parameter_mismatches(MLPROJECT.read_text(encoding="utf-8")) == []


def test_every_config_field_on_the_command_line_is_a_parameter_of_its_entry_point():
    import yaml

    entries = yaml.safe_load(MLPROJECT.read_text(encoding="utf-8"))["entry_points"]
    for entry, config_cls in (("pretrain", PretrainConfig), ("finetune", FinetuneConfig), ("cca", CcaConfig)):
        declared = set(entries[entry]["parameters"])
        missing = set(cli_fields(config_cls)) - declared
        assert not missing, f"{entry}: {missing}"
        for name, spec in entries[entry]["parameters"].items():
            assert "default" in spec, f"{entry}.{name} has no default"
            assert f"{{{name}}}" in entries[entry]["command"]
        assert "'{" not in entries[entry]["command"] and '"{' not in entries[entry]["command"]


def _mlproject_with_extra_field(monkeypatch) -> str:
    @dataclasses.dataclass(frozen=True)
    class Extended(FinetuneConfig):
        new_knob: int = 3
        OPTIONS: ClassVar[dict[str, Opt]] = {"new_knob": Opt("A parameter added to the config.")}

    @click.command("finetune", cls=StepCommand)
    @config_options(Extended)
    def main(**values):  # pragma: no cover - only its options are read
        pass

    import pipelines.finetune

    monkeypatch.setattr(pipelines.finetune, "main", main)
    return MLPROJECT.read_text(encoding="utf-8")


def test_a_config_field_missing_from_mlproject_is_caught(monkeypatch):
    text = _mlproject_with_extra_field(monkeypatch)
    problems = mlproject.parameter_mismatches(text)
    assert "finetune: parameter 'new_knob' is missing from MLproject" in problems
    assert "new_knob" in mlproject.render()


def test_an_mlproject_parameter_the_command_does_not_take_is_caught():
    text = MLPROJECT.read_text(encoding="utf-8").replace(
        "      dataset: {type: string, default: \"mias\"}\n      init:",
        "      dataset: {type: string, default: \"mias\"}\n      colour: {type: string, default: \"red\"}\n      init:", 1)
    assert "colour" in text
    assert "finetune: MLproject declares 'colour', which pipelines.finetune does not take" in \
        mlproject.parameter_mismatches(text)


def test_a_quoted_placeholder_is_caught():
    text = MLPROJECT.read_text(encoding="utf-8").replace("--data-root {data_root}", "--data-root \"{data_root}\"", 1)
    assert any("{data_root} is quoted" in p for p in mlproject.parameter_mismatches(text))


def test_mlproject_check_command(tmp_path):
    out = tmp_path / "MLproject"
    runner = CliRunner()
    assert runner.invoke(mlproject.main, ["--out", str(out)]).exit_code == 0
    assert out.read_text() == mlproject.render()
    assert runner.invoke(mlproject.main, ["--out", str(out), "--check"]).exit_code == 0
    out.write_text(out.read_text() + "# edited\n")
    result = runner.invoke(mlproject.main, ["--out", str(out), "--check"])
    assert result.exit_code == 1 and "out of date" in result.output


# --- the generated options -------------------------------------------------------------


def _invoke(args: list[str]):
    import pipelines.finetune

    return CliRunner().invoke(pipelines.finetune.main, args)


@pytest.mark.parametrize("args, message", [
    (["--epochs", "2.5"], "Invalid value for '--epochs': 2.5 is not a whole number"),
    (["--model", "resnet51"], "Did you mean 'resnet50'?"),
    (["--dataset", "inbrest"], "Did you mean 'inbreast'?"),
    (["--device", "gpu"], "'gpu' is not one of auto, cpu, cuda, mps"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--seed", "x"], "'x' is not an integer"),
])
def test_bad_values_are_one_line_before_anything_runs(args, message, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'never.db'}")
    result = _invoke(args + ["--data-root", str(tmp_path / "nodata")])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and message in lines[0]
    assert not (tmp_path / "never.db").exists()


def test_mlflow_spellings_of_integers_are_accepted(tmp_path):
    # 2.0 is an integer; the missing data folder is the next (one-line) error.
    result = _invoke(["--epochs", "2.0", "--image-size", "64.0", "--data-root", str(tmp_path)])
    assert result.exit_code == 1 and "dataset folder not found" in result.output
    assert "Invalid value" not in result.output


def test_same_meaning_compares_as_the_option_parses():
    config = FinetuneConfig(ft_fraction=0.0, lr=1e-3, epochs=2, data_root="/data")
    assert same_meaning(config, "ft_fraction", "0")
    assert same_meaning(config, "lr", "1e-3")
    assert same_meaning(config, "epochs", "2.0")
    assert same_meaning(config, "image_size", "0")  # 0 = the model's own size (None)
    assert same_meaning(config, "deterministic", "false")
    assert not same_meaning(config, "lr", "1e-4")
    assert not same_meaning(config, "epochs", "3")
    cca = CcaConfig(measures=("svcca", "cka"))
    assert same_meaning(cca, "measures", "cka")  # svcca is always added first
    assert same_meaning(cca, "measures", "svcca,cka")


def test_empty_data_root_means_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("TLSTUDY_DATA", str(tmp_path))
    assert same_meaning(FinetuneConfig(data_root=str(tmp_path)), "data_root", "")


@pytest.mark.parametrize("config", [
    FinetuneConfig(dataset="inbreast", init="ddsm", ft_fraction=0.2, lr=1e-3, epochs=3, image_size=64,
                   deterministic=True, data_root="/data"),
    PretrainConfig(model="vgg16", init="imagenet", seed=2, data_root="/data"),
    CcaConfig(dataset="ultrasound", measures=("svcca", "cka"), keep=20, max_positions=None, data_root="/data"),
])
def test_config_argv_rebuilds_the_same_config(config):
    """What a parent process (the study runner) can hand a child: its config as arguments."""
    from pipelines._options import config_argv, config_values

    cls = type(config)

    @click.command(cls=StepCommand)
    @config_options(cls)
    def main(**values):
        return cls(**config_values(cls, values))

    rebuilt = main.main(config_argv(config), standalone_mode=False)
    assert rebuilt == config
    assert rebuilt.config_hash() == config.config_hash()
