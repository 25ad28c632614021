"""`tlstudy demo`: the README's main job on the embedded defaults (synthetic data, SQLite store)."""

from __future__ import annotations

from pathlib import Path

import click

from tlcore.data.registry import reader_names


@click.command("demo")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=Path("data"),
              show_default=True, help="Where the look-alike data lives (written there if absent).")
@click.option("--scale", type=click.Choice(["tiny", "small"]), default="small", show_default=True)
def demo(data_root: Path, scale: str) -> None:
    """Write look-alike data if absent, then check every dataset."""
    from tlcore.data.check import check_dataset
    from tlcore.data.synth import SynthConfig, generate

    if not all((data_root / name).exists() for name in reader_names()):
        click.echo(f"writing SYNTHETIC look-alike data ({scale}) to {data_root} ...")
        generate(data_root, SynthConfig(scale=scale, seed=0), progress=True)
    for name in reader_names():
        report = check_dataset(name, data_root / name, progress=False)
        click.echo(report.summary_text())
        click.echo("")
