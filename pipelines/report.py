"""`report` entry point: the paper's tables and figure, built from what the tracking server holds.

    tlstudy report --experiment tlstudy --out reports/tlstudy
    mlflow run . -e report --env-manager local
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.option("--experiment", default="tlstudy", show_default=True, envvar="MLFLOW_EXPERIMENT_NAME",
              help="MLflow experiment holding the study's runs.")
@click.option("--out", "out_dir", default="", help="Output folder (default: reports/<experiment>).")
@click.option("--figures/--no-figures", default=True, show_default=True, help="Write Figure 1 and ROC figures.")
@click.option("--predictions/--no-predictions", default=True, show_default=True,
              help="Download the plotted runs' predictions (ROC curves, DeLong tests).")
@click.option("--log/--no-log", "log_run", default=True, show_default=True,
              help="Log the report itself as a run (stage `report`) with every file as an artifact.")
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI",
              help="Tracking store. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here.")
def main(experiment: str, out_dir: str, figures: bool, predictions: bool, log_run: bool,
         tracking_uri: str | None) -> None:
    """Write table_<dataset>.csv, table_hybrid.csv, cca.csv, figures, report.md and report.html."""
    import os

    from tracking.report import ReportError, build_report, log_report

    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri

    out_dir = Path(out_dir) if out_dir else Path("reports") / experiment
    try:
        result = build_report(experiment, out_dir, figures=figures, predictions=predictions)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from exc
    run_id = log_report(result) if log_run else None
    click.echo(f"report of experiment {experiment!r}: {result.n_finetune_runs} fine-tune runs, "
               f"{result.n_cca_runs} CCA runs")
    for finding in result.findings:
        click.echo(f"  - {finding}")
    click.echo(f"written to {out_dir.resolve()} (open report.html in a browser)")
    if run_id:
        click.echo(f"logged as run {run_id}")


if __name__ == "__main__":  # pragma: no cover
    main()
