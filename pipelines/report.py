"""`report` entry point: the paper's tables and figure, built from what the tracking server holds.

    tlstudy report                       # the most recent study in the store
    tlstudy report --experiment tlstudy-quick --out reports/tlstudy-quick
    mlflow run . -e report --env-manager local
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--experiment", default="", envvar="MLFLOW_EXPERIMENT_NAME",
              help="MLflow experiment holding the study's runs. Default: the experiment of the most "
                   "recent study in the store (the one `tlstudy study` last ran).")
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
    from tracking.query import NoStudyError, latest_study_experiment
    from tracking.report import ReportError, build_report, log_report
    from tracking.store import (
        TrackingConfigError,
        browse_hint,
        get_client,
        is_sqlite_uri,
        resolve_tracking_uri,
        sqlite_path,
    )

    uri = resolve_tracking_uri(tracking_uri or None)
    if is_sqlite_uri(uri) and not sqlite_path(uri).is_file():
        raise click.ClickException(f"no tracking database at {sqlite_path(uri)}: run a study first "
                                   f"(`tlstudy study --profile quick`), or pass --tracking-uri")
    if not experiment:
        try:
            experiment, why = latest_study_experiment(uri)
        except (NoStudyError, TrackingConfigError) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"reporting experiment {experiment!r} ({why}; choose another with --experiment)")
    out_dir = Path(out_dir) if out_dir else Path("reports") / experiment
    try:
        result = build_report(experiment, out_dir, tracking_uri=uri, figures=figures, predictions=predictions)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from exc
    run_id = log_report(result) if log_run else None
    if run_id:  # under `mlflow run . -e report`: the launcher's run points to the report run (tagged, deleted)
        from tracking.launcher import end_launcher_run_as_pointer

        end_launcher_run_as_pointer(get_client(uri), run_id)
    click.echo(f"report of experiment {experiment!r}: {result.n_finetune_runs} fine-tune runs, "
               f"{result.n_cca_runs} CCA runs")
    for finding in result.findings:
        click.echo(f"  - {finding}")
    click.echo(f"written to {out_dir.resolve()} (open report.html in a browser)")
    found = get_client(uri).get_experiment_by_name(experiment)
    if found is not None:
        click.echo(browse_hint(uri, found.experiment_id))
    if run_id:
        click.echo(f"logged as run {run_id}")


if __name__ == "__main__":  # pragma: no cover
    main()
