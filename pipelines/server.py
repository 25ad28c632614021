"""`tlstudy server`: a local MLflow tracking server (SQLite store, proxied artifacts) on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command("server")
@click.option("--store", type=click.Path(dir_okay=False, path_type=Path), default=Path("mlflow.db"),
              show_default=True, help="SQLite file holding runs, params, metrics and the model registry.")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=Path("mlartifacts"),
              show_default=True, help="Folder the server stores artifacts in (clients upload through it).")
@click.option("--port", type=int, default=5000, show_default=True, help="0 picks a free port.")
def main(store: Path, artifacts: Path, port: int) -> None:
    """Start `mlflow server` on 127.0.0.1, wait for /health, print the URL; Ctrl-C stops it."""
    from tracking.server import start_server

    backend = f"sqlite:///{store.resolve()}"
    handle = start_server(backend, artifacts, host="127.0.0.1", port=port)
    click.echo(f"MLflow tracking server ready: {handle.url}")
    click.echo(f"  store      {backend}")
    click.echo(f"  artifacts  {artifacts.resolve()}")
    click.echo(f"Point runs at it with:  export MLFLOW_TRACKING_URI={handle.url}")
    click.echo("Browse it in a web browser at the URL above. Ctrl-C stops the server.")
    try:
        while handle.is_running():
            time.sleep(1.0)
        click.echo("the server exited:\n" + handle.log_tail(), err=True)
        raise SystemExit(1)
    except KeyboardInterrupt:
        click.echo("stopping ...")
    finally:
        handle.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
