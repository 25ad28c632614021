"""`tlstudy synth` and `tlstudy data check`: look-alike data and dataset checks (no MLflow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tlcore.data.records import DatasetError
from tlcore.data.registry import reader_names


@click.command("synth")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data"),
              show_default=True, help="Folder to write ddsm/, inbreast/, mias/, ultrasound/ into.")
@click.option("--scale", type=click.Choice(["tiny", "small", "paper"]), default="tiny", show_default=True,
              help="tiny: seconds, for tests; small: the demo study; paper: the real sets' image counts.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--ultrasound-layout", type=click.Choice(["rodrigues", "busi"]), default="rodrigues",
              show_default=True, help="Which distributor's ultrasound layout to write.")
@click.option("--ddsm-layout", type=click.Choice(["classic", "descriptive"]), default="classic",
              show_default=True, help="CBIS-DDSM disk layout: as the CSV paths, or NBIA descriptive folders.")
@click.option("--progress/--no-progress", default=True)
def synth(out_dir: Path, scale: str, seed: int, ultrasound_layout: str, ddsm_layout: str, progress: bool) -> None:
    """Write SYNTHETIC look-alike datasets in the distributors' layouts.

    The images are generated (no patient data): mammogram-like sets with a learnable malignancy
    signal and a shared modality, and an ultrasound-like set of a different modality. They exist
    so the whole study runs on a fresh machine and as positive/negative controls.
    """
    from tlcore.data.synth import SynthConfig, generate

    config = SynthConfig(scale=scale, seed=seed, ultrasound_layout=ultrasound_layout, ddsm_layout=ddsm_layout)
    summary = generate(out_dir, config, progress=progress)
    click.echo(f"wrote synthetic look-alike data (scale={scale}, seed={seed}) to {out_dir}")
    for name, root in summary.roots.items():
        exp = summary.expected.get(name, {})
        click.echo(f"  {name:<10} {root}  images={exp.get('n_images')} malignant={exp.get('n_malignant')}")


@click.group("data")
def data_group() -> None:
    """Inspect datasets in the layouts their distributors ship."""


@data_group.command("check")
@click.option("--dataset", "dataset", required=True, type=click.Choice(reader_names()),
              help="Which reader to use.")
@click.option("--root", required=True, type=click.Path(path_type=Path),
              help="The dataset folder as downloaded.")
@click.option("--deep", is_flag=True, help="Fully decode every image instead of reading headers.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a summary.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on for a terminal).")
def data_check(dataset: str, root: Path, deep: bool, as_json: bool, progress: bool | None) -> None:
    """Parse a dataset's metadata, open every image and report counts and skipped files."""
    from tlcore.data.check import check_dataset

    if progress is None:
        progress = sys.stderr.isatty() and not as_json
    try:
        report = check_dataset(dataset, root, deep=deep, progress=progress)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(report.summary_text())
