"""`tlstudy study` (MLproject entry point ``study``): run the paper's whole grid as one tracked study.

Thin wrapper: the planning, skipping, launching and reporting live in :mod:`tracking.study`.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """Accept repeated options and comma/space separated lists alike (``--models vgg16,resnet50``)."""
    out: list[str] = []
    for value in values:
        out += [v for v in value.replace(",", " ").split() if v]
    return tuple(out)


def _seeds(values: tuple[str, ...]) -> tuple[int, ...]:
    seeds = []
    for text in _split(values):
        try:
            seeds.append(int(float(text)))
        except ValueError:
            raise click.BadParameter(f"seed {text!r} is not an integer", param_hint="--seeds") from None
    return tuple(seeds)


@click.command("study", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--profile", type=click.Choice(["quick", "demo", "paper"]), default="quick", show_default=True,
              help="quick: tiny look-alike data, minutes on a CPU; demo: small look-alike data; "
                   "paper: the paper's sizes and seeds on the real data (GPU).")
@click.option("--datasets", multiple=True, help="Target datasets (inbreast, mias, ultrasound); comma separated "
                                                 "or repeated. Default: all three.")
@click.option("--models", multiple=True, help="Models (vgg16, resnet50, inception_v3, patch_cnn). Default: all four.")
@click.option("--seeds", multiple=True, help="Seeds, overriding the profile's (e.g. 0,1,2).")
@click.option("--data-root", default="",
              help="Folder holding ddsm/ inbreast/ mias/ ultrasound/. Default: the profile's "
                   "(quick: data/synth-tiny, demo: data/synth-small, paper: $TLSTUDY_DATA or ./data).")
@click.option("--experiment", default="",
              help="MLflow experiment. Default: tlstudy-quick / tlstudy-demo / tlstudy (paper).")
@click.option("--jobs", type=click.IntRange(min=0), default=0,
              help="Children run at once (0 = the profile's: 2 for quick and demo, 1 for paper).")
@click.option("--out", "out_dir", default="", help="Report folder. Default: reports/<experiment>.")
@click.option("--dry-run", is_flag=True, help="Print the plan (stage, dataset, model, init, ft, transfer, seed, "
                                              "status planned/done/NA) and run nothing.")
@click.option("--max-runs", type=click.IntRange(min=0), default=None,
              help="Stop launching after this many children (run the command again to continue).")
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI",
              help="Tracking store. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here.")
@click.option("--report/--no-report", default=True, show_default=True, help="Build and log the report at the end.")
def main(profile: str, datasets: tuple[str, ...], models: tuple[str, ...], seeds: tuple[str, ...],
         data_root: str, experiment: str, jobs: int, out_dir: str, dry_run: bool,
         max_runs: int | None, tracking_uri: str | None, report: bool) -> None:
    """Plan and run every configuration of the paper, skipping what already finished, then report.

    Empty values (as an MLproject passes them) mean "the profile's default".
    """
    from tracking.study import StudyError, StudyOptions, run_study

    options = StudyOptions(
        profile=profile, datasets=_split(datasets), models=_split(models), seeds=_seeds(seeds),
        data_root=Path(data_root) if data_root else None, experiment=experiment or None, jobs=jobs or None,
        out_dir=Path(out_dir) if out_dir else None, dry_run=dry_run, max_runs=max_runs,
        tracking_uri=tracking_uri or None, report=report,
    )
    stop_on_sigterm()
    try:
        result = run_study(options, echo=click.echo)
    except StudyError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("\ninterrupted: the running children were stopped. Run the same command again to continue; "
                   "finished configurations are skipped and interrupted runs resume.", err=True)
        sys.exit(130)
    if not result.ok:
        sys.exit(1)


def stop_on_sigterm() -> None:
    """Make SIGTERM (`kill`, a batch scheduler's time limit) stop the study the way Ctrl-C does.

    Running children are then stopped, their runs marked KILLED and resumed by the next run
    of the same command; without this the runner would die without stopping them cleanly.
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)


study = main

if __name__ == "__main__":  # pragma: no cover
    main()
